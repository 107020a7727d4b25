"""The five tasks' encodings, on small hand-checked examples, and the metrics."""

import math

import pytest
import torch

import ntm
from ntm.runs.evaluation import EndMarker
from ntm.tasks import (
    TASKS,
    AssociativeRecallTask,
    CopyTask,
    NGramsTask,
    PrioritySortTask,
    RepeatCopyTask,
    bit_errors,
    concat,
    cost_bits,
    loss_bits,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_has_the_five_tasks() -> None:
    assert set(TASKS) == {"copy", "repeat_copy", "associative_recall", "ngrams", "priority_sort"}
    copy = TASKS["copy"](min_length=120, max_length=120)
    assert copy.sample(2, gen()).inputs.shape == (241, 2, 9)


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_samples_consistent_shapes(name: str) -> None:
    task = TASKS[name]()
    batch = task.sample(5, gen())
    steps = batch.inputs.shape[0]
    assert batch.inputs.shape == (steps, 5, task.input_size)
    assert batch.targets.shape == (steps, 5, task.output_size)
    assert batch.mask.shape == (steps, 5)
    assert batch.mask.dtype == torch.bool
    assert batch.mask.any(0).all()
    assert set(batch.targets.unique().tolist()) <= {0.0, 1.0}
    # The same generator seed gives the same batch.
    again = task.sample(5, gen())
    assert torch.equal(batch.inputs, again.inputs)


def test_copy_encoding_by_hand() -> None:
    task = CopyTask(bits=3, min_length=2, max_length=2)
    b = task.sample(1, gen())
    x, y, m = b.inputs[:, 0], b.targets[:, 0], b.mask[:, 0]
    assert x.shape == (5, 4)
    data = x[:2, :3]
    assert torch.equal(x[:2, 3], torch.zeros(2))  # no delimiter during the data
    assert torch.equal(x[2], torch.tensor([0.0, 0.0, 0.0, 1.0]))  # delimiter alone
    assert torch.equal(x[3:], torch.zeros(2, 4))  # silent while answering
    assert torch.equal(y[3:], data)
    assert torch.equal(y[:3], torch.zeros(3, 3))
    assert m.tolist() == [False, False, False, True, True]


def test_copy_pads_and_masks_shorter_sequences() -> None:
    task = CopyTask(bits=4, min_length=1, max_length=6)
    b = task.sample(64, gen(3))
    lengths = b.inputs[..., 4].argmax(0)  # the delimiter step is the length
    for i, length in enumerate(lengths.tolist()):
        assert b.mask[:, i].sum() == length
        assert b.mask[length + 1 : 2 * length + 1, i].all()
        assert torch.equal(b.targets[length + 1 : 2 * length + 1, i], b.inputs[:length, i, :4])
        assert not b.inputs[2 * length + 1 :, i].any()
    assert b.inputs.shape[0] == 2 * int(lengths.max()) + 1


def test_repeat_copy_encoding_by_hand() -> None:
    task = RepeatCopyTask(bits=2, min_length=2, max_length=2, min_repeats=3, max_repeats=3)
    b = task.sample(1, gen())
    x, y, m = b.inputs[:, 0], b.targets[:, 0], b.mask[:, 0]
    assert x.shape == (2 + 1 + 6 + 1, 4)
    data = x[:2, :2]
    assert x[2, 2] == 1.0
    assert x[2, 3] == pytest.approx((3 - 5.5) / math.sqrt(8.25))
    assert torch.equal(y[3:9, :2], data.repeat(3, 1))
    assert torch.equal(y[9], torch.tensor([0.0, 0.0, 1.0]))  # end marker alone
    assert y[:9, 2].sum() == 0
    assert m.tolist() == [False] * 3 + [True] * 7


def test_repeat_copy_without_end_marker() -> None:
    task = RepeatCopyTask(bits=2, min_length=2, max_length=2, min_repeats=3, max_repeats=3)
    plain = RepeatCopyTask(**{**task.to_dict(), "end_marker": False})
    assert (plain.input_size, plain.output_size) == (4, 2)
    with_marker, without = task.sample(1, gen()), plain.sample(1, gen())
    assert torch.equal(without.inputs, with_marker.inputs[:-1])  # same draw, one step fewer
    assert torch.equal(without.targets[:, 0], with_marker.targets[:-1, 0, :2])
    assert without.mask[:, 0].tolist() == [False] * 3 + [True] * 6


def test_repeat_count_normalisation_stays_fixed_beyond_training_range() -> None:
    task = RepeatCopyTask(min_repeats=20, max_repeats=20, min_length=1, max_length=1)
    b = task.sample(1, gen())
    assert b.inputs[1, 0, 9] == pytest.approx((20 - 5.5) / math.sqrt(8.25))


def test_associative_recall_encoding_by_hand() -> None:
    task = AssociativeRecallTask(bits=2, item_length=2, min_items=3, max_items=3)
    b = task.sample(1, gen(5))
    x, y, m = b.inputs[:, 0], b.targets[:, 0], b.mask[:, 0]
    # 3 items of (delimiter + 2 steps), query delimiter, 2 query steps, query delimiter, 2 answers.
    assert x.shape == (9 + 1 + 2 + 1 + 2, 4)
    assert x[[0, 3, 6], 2].tolist() == [1.0, 1.0, 1.0]
    assert x[[9, 12], 3].tolist() == [1.0, 1.0]
    items = [x[1:3, :2], x[4:6, :2], x[7:9, :2]]
    query = x[10:12, :2]
    matches = [i for i in range(2) if torch.equal(items[i], query)]
    assert matches  # the query is one of the items but the last
    assert any(torch.equal(y[13:15], items[i + 1]) for i in matches)
    assert m.tolist() == [False] * 13 + [True] * 2


def test_associative_recall_never_queries_the_last_item() -> None:
    task = AssociativeRecallTask(bits=8, item_length=1, min_items=2, max_items=2)
    b = task.sample(200, gen(6))
    # Items distinct with overwhelming probability: the query must equal the first item.
    assert torch.equal(b.inputs[5, :, :8], b.inputs[1, :, :8])
    assert torch.equal(b.targets[7], b.inputs[3, :, :8])


def test_ngrams_inputs_are_the_previous_targets() -> None:
    task = NGramsTask(length=50)
    b = task.sample(3, gen())
    assert b.inputs.shape == (50, 3, 1)
    assert torch.equal(b.inputs[1:], b.targets[:-1])
    assert b.mask.all()


def test_ngrams_optimal_predictor_by_hand() -> None:
    task = NGramsTask(length=8, order=2)  # context of one bit
    bits = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    p = task.optimal_predictions(bits.view(-1, 1, 1))[:, 0, 0]
    # After "1" at t=0: nothing seen yet -> 1/2. After t=1 ("1" followed "1"): (1+.5)/(1+1) = .75.
    # After t=2 ("0" followed "1"): context "0", unseen -> 1/2. After t=3: context "1", N1=1, N0=1.
    assert p.tolist() == pytest.approx([0.5, 0.75, 0.5, 0.5, 2.5 / 4, 3.5 / 5])


def test_ngrams_optimal_predictor_with_a_window_forgets_old_transitions() -> None:
    task = NGramsTask(length=8, order=2)
    bits = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 1.0]).view(-1, 1, 1)
    p = task.optimal_predictions(bits, window=2)[:, 0, 0]
    # Transitions end at t=1..5: 1->1, 1->0, 0->1, 1->1, 1->1. Counted at step t: those that
    # ended at t-1 and t. t=3: "0->1", "1->0" seen; context "1": N1=0, N0=1 -> .25.
    # t=4: "0->1", "1->1"; context "1": N1=1 -> .75. t=5: "1->1" twice -> 2.5/3.
    assert p.tolist() == pytest.approx([0.5, 0.75, 0.5, 0.25, 0.75, 2.5 / 3])
    longer = NGramsTask(length=30)  # 25 transitions: t = 5 .. 29
    episodes = longer.sample(4, gen(3)).inputs
    full = longer.optimal_predictions(episodes)
    assert torch.equal(longer.optimal_predictions(episodes, window=25), full)
    assert not torch.equal(longer.optimal_predictions(episodes, window=10), full)
    with pytest.raises(ValueError, match="window = 0: expected an integer >= 1"):
        task.optimal_predictions(bits, window=0)


def test_ngrams_optimal_cost_near_133_bits() -> None:
    task = NGramsTask()
    cost = task.optimal_cost(task.sample(1000, gen(7)))
    assert 128 < cost < 138, cost


def test_ngram_probabilities_follow_beta_half_half() -> None:
    table = NGramsTask().sample_probabilities(4000, gen(8))
    assert table.shape == (4000, 32)
    # Beta(1/2, 1/2): mean 1/2, variance 1/8, CDF (2 / pi) asin(sqrt(x)).
    assert float(table.mean()) == pytest.approx(0.5, abs=0.005)
    assert float(table.var()) == pytest.approx(0.125, abs=0.002)
    assert float((table < 0.1).float().mean()) == pytest.approx(
        2 / math.pi * math.asin(0.1**0.5), abs=0.005
    )


def test_priority_sort_encoding() -> None:
    task = PrioritySortTask(bits=3, num_inputs=5, num_outputs=3)
    b = task.sample(4, gen(9))
    assert b.inputs.shape == (9, 4, 5)
    for i in range(4):
        vectors, priorities = b.inputs[:5, i, :3], b.inputs[:5, i, 3]
        assert (priorities.abs() <= 1).all()
        order = priorities.argsort(descending=True)[:3]
        assert torch.equal(b.targets[6:, i], vectors[order])
        assert b.inputs[5, i, 4] == 1.0
    assert b.mask[6:].all() and not b.mask[:6].any()


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("copy", {"min_length": -1}, "min_length = -1"),
        ("copy", {"min_length": 5, "max_length": 3}, "max_length = 3"),
        ("repeat_copy", {"max_repeats": 0}, "max_repeats"),
        ("associative_recall", {"min_items": 1}, "min_items = 1"),
        ("priority_sort", {"num_outputs": 30}, "num_outputs = 30"),
        ("copy", {"length": 5}, "unknown key"),
    ],
)
def test_bad_task_settings_are_named(name: str, settings: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ntm.make_task(name, **settings)


def test_unknown_task_name() -> None:
    with pytest.raises(ValueError, match="unknown task 'kopy'"):
        ntm.make_task("kopy")


def test_metrics_by_hand() -> None:
    targets = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])  # (T=2, B=1, O=2)
    logits = torch.tensor([[[2.0, 1.0]], [[-1.0, 3.0]]])
    mask = torch.tensor([[True], [False]])
    assert bit_errors(logits, targets, mask) == 1.0  # the second channel of step 0
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / math.log(2)
    assert cost_bits(logits, targets, mask) == pytest.approx(expected)
    assert float(loss_bits(logits, targets, mask)) == pytest.approx(expected)


def test_metrics_average_over_sequences() -> None:
    targets = torch.ones(3, 4, 2)
    logits = torch.full((3, 4, 2), -1.0)
    mask = torch.ones(3, 4, dtype=torch.bool)
    assert bit_errors(logits, targets, mask) == 6.0


def test_end_marker_tally() -> None:
    task = RepeatCopyTask(min_length=2, max_length=3, min_repeats=1, max_repeats=3)
    batch = task.sample(5, torch.Generator().manual_seed(0))
    perfect = batch.targets * 20 - 10  # logits that threshold to the targets
    tally = EndMarker(task.bits)
    tally(perfect, batch)
    assert (tally.wrong, tally.right) == (0, 5)
    # The marker said one step early in sequence 2, and never in sequence 4.
    early = perfect.clone()
    last = [int(batch.mask[:, b].nonzero().max()) for b in range(5)]
    early[last[2] - 1, 2, task.bits] = 10.0
    early[last[4], 4, task.bits] = -10.0
    early[last[0], 0, 0] *= -1  # a data bit wrong: not the marker's business
    tally = EndMarker(task.bits)
    tally(early, batch)
    assert (tally.wrong, tally.right) == (2, 3)


@pytest.mark.parametrize("name", ["copy", "repeat_copy"])
def test_seeded_sequences_are_those_of_their_own_generators(name: str) -> None:
    """A batch drawn from per-sequence seeds at once holds what drawing each sequence from
    its own generator and padding gives (copy builds it at once, the others so)."""
    task = ntm.make_task(name, max_length=6)
    seeds = [11, 3, 250, 7, 7]
    one_by_one = concat([task.sample(1, torch.Generator().manual_seed(s)) for s in seeds])
    for got, expected in zip(task.sample_seeded(seeds), one_by_one, strict=True):
        assert torch.equal(got, expected)
