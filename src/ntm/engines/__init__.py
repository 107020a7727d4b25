"""How a model runs a sequence: the engine selector, the fused engine and the native one."""
