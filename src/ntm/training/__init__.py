"""Training: the trainer and its parts.

Data, evaluator, update guard, schedule, optimisers, transfer, processes.
"""
