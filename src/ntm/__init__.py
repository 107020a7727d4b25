"""ntm: Neural Turing Machines and their successor, the DNC, in PyTorch.

The Neural Turing Machine (Graves, Wayne & Danihelka, 2014) and the Differentiable Neural
Computer (Graves et al., 2016). The package is layered, one subpackage a layer:
:mod:`ntm.models` (each model's equations, settings and modules), :mod:`ntm.engines` (how a
model runs a sequence), :mod:`ntm.tasks`, :mod:`ntm.runs` (run folders, loading,
evaluation, the shipped models), :mod:`ntm.training`, :mod:`ntm.sweeps`,
:mod:`ntm.pictures` and :mod:`ntm.cli`.

The short names the README documents (``ntm.addressing``, ``ntm.memory``, ``ntm.dnc``,
``ntm.native``, ``ntm.pretrained``, ...) are these modules under their public names.
"""

import sys

from ntm import models, tasks
from ntm.engines import native
from ntm.models import mamba, transformer, xlstm
from ntm.models.dnc import addressing as dnc
from ntm.models.dnc.config import DNCConfig, task_dnc_config
from ntm.models.dnc.model import DNC, DNCCell, DNCState, DNCTrace
from ntm.models.lstm import LSTMBaseline, LSTMConfig, paper_lstm_config
from ntm.models.ntm import addressing, memory
from ntm.models.ntm.config import NTMConfig, paper_ntm_config
from ntm.models.ntm.model import NTM, NTMCell, NTMState, NTMTrace
from ntm.models.sam.config import SAMConfig
from ntm.models.sam.model import SAM, SAMCell
from ntm.registry import Recipe, register_model, register_task
from ntm.runs import pretrained
from ntm.runs.load import load
from ntm.tasks import TASKS, Batch, bit_errors, cost_bits, make_task, mqar

__version__ = "0.1.0"

#: The public short names of modules that live deeper in the tree: ``import ntm.dnc`` and
#: ``from ntm.addressing import address`` work as the README shows them.
PUBLIC_MODULES = {
    "addressing": addressing,
    "dnc": dnc,
    "mamba": mamba,
    "memory": memory,
    "mqar": mqar,
    "native": native,
    "pretrained": pretrained,
    "transformer": transformer,
    "xlstm": xlstm,
}
for _name, _module in PUBLIC_MODULES.items():
    sys.modules[f"{__name__}.{_name}"] = _module

__all__ = [
    "DNC",
    "NTM",
    "SAM",
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
    "SAMCell",
    "SAMConfig",
    "__version__",
    "addressing",
    "bit_errors",
    "cost_bits",
    "dnc",
    "load",
    "make_task",
    "mamba",
    "memory",
    "models",
    "mqar",
    "native",
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
