"""The Differentiable Neural Computer: its equations, settings and modules."""
