"""ntm: Neural Turing Machines and their successor, the DNC, in PyTorch.

The Neural Turing Machine (Graves, Wayne & Danihelka, 2014) and the Differentiable Neural
Computer (Graves et al., 2016).
"""

from ntm import addressing, dnc, mamba, memory, mqar, pretrained, tasks, transformer, xlstm
from ntm.config import (
    DNCConfig,
    LSTMConfig,
    NTMConfig,
    paper_lstm_config,
    paper_ntm_config,
    task_dnc_config,
)
from ntm.dnc_model import DNC, DNCCell, DNCState, DNCTrace
from ntm.model import NTM, LSTMBaseline, NTMCell, NTMState, NTMTrace
from ntm.registry import Recipe, register_model, register_task
from ntm.runs import load
from ntm.tasks import TASKS, Batch, bit_errors, cost_bits, make_task

__version__ = "0.1.0"

__all__ = [
    "DNC",
    "NTM",
    "TASKS",
    "Batch",
    "DNCCell",
    "DNCConfig",
    "DNCState",
    "DNCTrace",
    "LSTMBaseline",
    "LSTMConfig",
    "NTMCell",
    "NTMConfig",
    "NTMState",
    "NTMTrace",
    "Recipe",
    "__version__",
    "addressing",
    "bit_errors",
    "cost_bits",
    "dnc",
    "load",
    "make_task",
    "mamba",
    "memory",
    "mqar",
    "paper_lstm_config",
    "paper_ntm_config",
    "pretrained",
    "register_model",
    "register_task",
    "task_dnc_config",
    "tasks",
    "transformer",
    "xlstm",
]
