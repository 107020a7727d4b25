"""Training: the trainer and its parts (data, evaluator, guard, schedule, optimisers, transfer, processes)."""
