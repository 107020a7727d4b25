"""The Neural Turing Machine: its addressing and memory equations, head layout, settings and modules."""
