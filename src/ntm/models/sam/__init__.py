"""Sparse Access Memory: its equations, settings and modules."""
