"""Held-out evaluation in chunks: a causal model is spared the padding after each sequence's
last scored step, and what it reports does not change."""

import pytest
import torch
from torch import Tensor, nn

from ntm import registry
from ntm.engines.native import native_available
from ntm.runs.config import resolve_config
from ntm.runs.evaluation import (
    CACHE_BYTES,
    CHUNK,
    CPU_CHUNK,
    AllRight,
    _chunks,
    chunk_for,
    evaluate,
)
from ntm.runs.load import build_model
from ntm.tasks.contract import Batch
from ntm.tasks.scoring import scoring

#: Each built-in model on a token task whose held-out sequences vary in length (and so in
#: padding), small where its defaults are large.
SMALL = {
    "ntm": {"controller_size": 16, "memory_size": 16, "word_size": 6},
    "dnc": {"controller_size": 16, "memory_size": 16, "word_size": 6},
    "sam": {"controller_size": 16, "memory_size": 16, "word_size": 6},
    "lstm": {"hidden_size": 16},
    "transformer": {"d_model": 16, "num_heads": 2, "ff_size": 32},
    "mamba": {"d_model": 16},
    "xlstm": {"d_model": 16, "num_heads": 2},
}


def _model_and_batch(model: str, task: str = "reverse_string") -> tuple[nn.Module, Batch]:
    run = resolve_config({"model": model, "task": task}, {"max_length": 12}, SMALL[model])
    torch.manual_seed(0)
    built = build_model(run).eval()
    batch = run.task.sample(50, torch.Generator().manual_seed(1))
    return built, batch


class Uncut(nn.Module):
    """A model as it is, declaring nothing: evaluated on every step of every chunk."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        out: Tensor | tuple[Tensor, ...] = self.model(inputs)
        return out


def test_every_built_in_model_declares_itself_causal() -> None:
    for name, cls in registry.models().items():
        if name in SMALL:
            assert registry.causal(cls), name
    assert not registry.causal(Uncut)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_causal_model_reports_the_same_with_its_padding_cut(name: str) -> None:
    model, batch = _model_and_batch(name)
    lengths = batch.mask.sum(0)
    assert lengths.min() < lengths.max()  # sequences of several lengths, padded
    score = scoring(resolve_config({"model": name, "task": "reverse_string"}, {}, {}).task)
    # The declaration holds: no output depends on a later input.
    inputs = batch.inputs.clone()
    changed = inputs.clone()
    changed[9:] = torch.rand_like(changed[9:])
    with torch.no_grad():
        before, after = model(inputs), model(changed)
    before = before[0] if isinstance(before, tuple) else before
    after = after[0] if isinstance(after, tuple) else after
    torch.testing.assert_close(before[:9], after[:9])

    cut_right, whole_right = AllRight(score), AllRight(score)
    cut = evaluate(model, batch, chunk=16, score=score, inspect=cut_right)
    whole = evaluate(Uncut(model), batch, chunk=16, score=score, inspect=whole_right)
    assert cut[1] == whole[1]  # wrong tokens, counted
    assert cut[0] == pytest.approx(whole[0], rel=1e-5)
    assert cut_right.right == whole_right.right


def test_chunks_of_a_causal_model_hold_like_lengths_cut_after_their_last_scored_step() -> None:
    mask = torch.zeros(10, 5, dtype=torch.bool)
    for sequence, (first, last) in enumerate([(6, 9), (1, 2), (3, 5), (0, 0), (4, 7)]):
        mask[first : last + 1, sequence] = True
    chunks = _chunks(mask, 2, causal=True)
    assert [(list(map(int, which)), steps) for which, steps in chunks] == [  # type: ignore[arg-type]
        ([3, 1], 3),
        ([2, 4], 8),
        ([0], 10),
    ]
    assert _chunks(mask, 2, causal=False) == [
        (slice(0, 2), 10),
        (slice(2, 4), 10),
        (slice(4, 6), 10),
    ]
    nothing = torch.zeros(4, 3, dtype=torch.bool)
    assert [steps for _, steps in _chunks(nothing, 2, causal=True)] == [1, 1]


def test_a_cpu_chunk_keeps_the_states_of_its_sequences_within_the_cache() -> None:
    cpu = torch.device("cpu")
    dnc, _ = _model_and_batch("dnc")
    assert registry.state_bytes(dnc) == 4 * (16 * 16 + 16 * 6 + 4 * 16)
    assert chunk_for(dnc, cpu) == CPU_CHUNK  # small states: as many as any model
    assert chunk_for(dnc, torch.device("cuda")) == CHUNK
    large = build_model(resolve_config({"model": "dnc", "task": "copy"}, {}, {"memory_size": 1024}))
    per_sequence = registry.state_bytes(large)
    assert per_sequence is not None and per_sequence > 4 * 2**20  # the links: 1024 x 1024
    assert chunk_for(large, cpu) == CACHE_BYTES // per_sequence == 2
    sparse = resolve_config(
        {"model": "dnc", "task": "copy"}, {}, {"memory_size": 1024, "link_sparsity": 8}
    )
    # Sparse links are K a row on the native engine, a dense matrix on the eager one.
    assert chunk_for(build_model(sparse, "eager"), cpu) == 2
    if native_available() is None:
        assert chunk_for(build_model(sparse, "native"), cpu) == CPU_CHUNK
    lstm, _ = _model_and_batch("lstm")
    assert registry.state_bytes(lstm) is None and chunk_for(lstm, cpu) == CPU_CHUNK
