"""The models, each registered by name where it is written.

The NTM, the DNC and Sparse Access Memory (one subpackage each: equations, settings,
modules), the paper's LSTM baseline, and the rivals: the Transformer, Mamba and the xLSTM.
"""

# The order of registration, which listings keep: the NTM and its baseline first.
from ntm.models.ntm import model as ntm_model  # isort: split

from ntm.models import lstm, mamba, transformer, xlstm  # isort: split

from ntm.models.dnc import model as dnc_model  # isort: split

from ntm.models.sam import model as sam_model

__all__ = ["dnc_model", "lstm", "mamba", "ntm_model", "sam_model", "transformer", "xlstm"]
