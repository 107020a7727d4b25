"""Sweeps of many runs: on this machine, or as Ray Tune trials on a cluster."""
