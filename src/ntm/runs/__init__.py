"""Run folders: their configuration, checkpoints, loading, evaluation and the shipped models."""
