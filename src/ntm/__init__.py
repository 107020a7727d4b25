"""ntm: Neural Turing Machines (Graves, Wayne & Danihelka, 2014) in PyTorch."""

from ntm import addressing, memory, pretrained, tasks
from ntm.config import LSTMConfig, NTMConfig, paper_lstm_config, paper_ntm_config
from ntm.model import NTM, LSTMBaseline, NTMCell, NTMState, NTMTrace
from ntm.runs import load
from ntm.tasks import TASKS, Batch, bit_errors, cost_bits, make_task

__version__ = "0.1.0"

__all__ = [
    "NTM",
    "TASKS",
    "Batch",
    "LSTMBaseline",
    "LSTMConfig",
    "NTMCell",
    "NTMConfig",
    "NTMState",
    "NTMTrace",
    "__version__",
    "addressing",
    "bit_errors",
    "cost_bits",
    "load",
    "make_task",
    "memory",
    "paper_lstm_config",
    "paper_ntm_config",
    "pretrained",
    "tasks",
]
