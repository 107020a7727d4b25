"""The Neural Turing Machine: equations, head layout, settings and modules."""
