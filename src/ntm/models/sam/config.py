"""Sparse Access Memory's settings: one dataclass, the source of its defaults and checks."""

from __future__ import annotations

from dataclasses import dataclass

from ntm.config import (
    AT_LEAST_ONE,
    OFF_OR_POSITIVE,
    SMALL_POSITIVE,
    Check,
    JSONConfig,
    require,
    setting,
)

#: The nearest-neighbour searches a config may ask for (``SAMConfig.search``).
SEARCHES = ("auto", "exact", "index")


@dataclass(frozen=True)
class SAMConfig(JSONConfig):
    """Everything needed to build an :class:`ntm.SAMCell` or :class:`ntm.SAM`: each field is
    a keyword argument of both, declared here once with its default, its check and why.

    Defaults are the copy task's: the NTM's controller and memory sizes, so that the models
    compare on equal terms.
    """

    input_size: int = setting(9, AT_LEAST_ONE)  # copy: 8 data bits + 1 delimiter channel
    output_size: int = setting(8, AT_LEAST_ONE)  # copy: the 8 data bits
    controller_size: int = setting(100, AT_LEAST_ONE)  # hidden units per LSTM layer
    # Stacked LSTM layers, each seeing the input and the one below (as the DNC's).
    controller_layers: int = setting(1, AT_LEAST_ONE)
    num_read_heads: int = setting(1, AT_LEAST_ONE)  # R; one write head, as in the paper
    memory_size: int = setting(128, AT_LEAST_ONE)  # N: slots, as the NTM's
    word_size: int = setting(20, AT_LEAST_ONE)  # M: width of a slot (the paper's W)
    k: int = setting(8, AT_LEAST_ONE)  # K: slots each read head attends to, the rest weigh 0
    # delta: an access counts for usage above this weight. 0.005, as the public PyTorch SAM
    # (ixaxaar/pytorch-dnc): a slot with under half a percent of the heads' weight was
    # not looked at, so the tail of a read's softmax does not keep stale slots from reuse.
    delta: float = setting(0.005, Check(lambda v: 0 <= v < 1, "a number in [0, 1)"))
    # Clip the interface vector to +-20 before activations (0: off).
    interface_clip: float = setting(20.0, OFF_OR_POSITIVE)
    output_clip: float = setting(20.0, OFF_OR_POSITIVE)  # clip output logits to +-20 (0: off)
    eps: float = setting(1e-8, SMALL_POSITIVE)  # guard in cosine similarity
    # How the native engine finds each read's K nearest slots. "exact": every row scanned,
    # O(N) a step; "index": an inverted-file index per sequence, updated as rows change
    # (approximate, far cheaper at large N); "auto": exact below
    # ntm.engines.native.sam.INDEX_FROM slots, where the scan is the cheaper one (measured).
    # The eager engine always searches exactly.
    search: str = setting("auto", Check(lambda v: v in SEARCHES, "one of auto, exact, index"))

    def check(self) -> None:
        require(
            self.k <= self.memory_size,
            type(self).__name__,
            "k",
            self.k,
            f"an integer in 1..memory_size = {self.memory_size}",
        )
