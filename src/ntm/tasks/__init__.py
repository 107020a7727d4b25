"""The tasks: the contract every task meets, the paper's five, MQAR, and their scoring.

Then the fifteen tasks of "Neural Networks and the Chomsky Hierarchy"
(:mod:`ntm.tasks.chomsky`).

Every name of :mod:`ntm.tasks.contract`, :mod:`ntm.tasks.paper` and
:mod:`ntm.tasks.scoring` is reachable from here, as ``ntm.tasks.NAME``.
"""

from ntm.tasks.contract import (
    Batch,
    RegisteredTask,
    Task,
    concat,
    generalisation,
    ladder,
    make_task,
    one_per_seed,
    task_target,
)
from ntm.tasks.paper import (
    TASKS,
    AssociativeRecallTask,
    CopyTask,
    NGramsTask,
    PrioritySortTask,
    RepeatCopyTask,
)

# MQAR after the paper's five, then the Chomsky hierarchy's: listings keep the order of
# registration.
from ntm.tasks import mqar  # isort: skip
from ntm.tasks import chomsky  # isort: skip
from ntm.tasks.scoring import (
    BITS,
    LN2,
    TOKENS,
    Scoring,
    bit_errors,
    cost_bits,
    cost_tokens,
    loss_bits,
    loss_tokens,
    scoring,
    wrong_bits,
    wrong_bits_each,
    wrong_tokens_each,
)

__all__ = [
    "BITS",
    "LN2",
    "TASKS",
    "TOKENS",
    "AssociativeRecallTask",
    "Batch",
    "CopyTask",
    "NGramsTask",
    "PrioritySortTask",
    "RegisteredTask",
    "RepeatCopyTask",
    "Scoring",
    "Task",
    "bit_errors",
    "chomsky",
    "concat",
    "cost_bits",
    "cost_tokens",
    "generalisation",
    "ladder",
    "loss_bits",
    "loss_tokens",
    "make_task",
    "mqar",
    "one_per_seed",
    "scoring",
    "task_target",
    "wrong_bits",
    "wrong_bits_each",
    "wrong_tokens_each",
]
