"""Which memory slots ``sequence.png`` draws, in what order, and how their axis is labelled."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ntm.models.ntm.model import NTMTrace
from ntm.pictures.figures import (
    SLOT_MARGIN,
    draw_sequence,
    sequence_figure,
    shown_slots,
    slot_ticks,
)
from ntm.tasks import Batch

N = 128


def attending(slots: list[int], count: int = N) -> np.ndarray:
    """(T, 1, count) weights: one head attending to ``slots[t]`` at step t."""
    weights = np.zeros((len(slots), 1, count))
    weights[np.arange(len(slots)), 0, slots] = 1.0
    return weights


def linear_crop(used: list[int], count: int = N) -> np.ndarray:
    """The crop drawn before slots were read as a circle: the used range and a margin,
    stopping at the memory's ends."""
    return np.arange(max(min(used) - SLOT_MARGIN, 0), min(max(used) + SLOT_MARGIN + 1, count))


def shortest_arc(used: list[int], count: int) -> int:
    """Slots in the shortest circular run that holds every used slot, by trying every start."""
    return min(max((u - start) % count for u in used) + 1 for start in used)


def test_band_across_slot_zero_is_one_short_run_of_true_indices() -> None:
    # The shipped copy model: writes from slot 127 downwards while the read head sits on 0.
    writes = attending([127, 126, 125, 124, 123])
    reads = attending([0, 0, 0, 127, 126])
    expected = [*range(121, 128), 0, 1, 2]
    np.testing.assert_array_equal(shown_slots(writes, reads), expected)
    # And upwards through slot 0, as a head that shifts forward does.
    np.testing.assert_array_equal(
        shown_slots(attending([126, 127, 0, 1, 2])), [*range(124, 128), *range(5)]
    )


def test_both_heads_count_towards_the_band() -> None:
    writes, reads = attending([1, 2, 3]), attending([125, 126])
    np.testing.assert_array_equal(shown_slots(writes, reads), [*range(123, 128), *range(6)])
    np.testing.assert_array_equal(shown_slots(writes), linear_crop([1, 2, 3]))


@pytest.mark.parametrize(
    "used", [[40, 41, 45, 50], [0, 1, 2], [1], [120, 127], [0, 60], [3, 30, 62, 90]]
)
def test_band_that_does_not_cross_slot_zero_is_the_old_crop(used: list[int]) -> None:
    np.testing.assert_array_equal(shown_slots(attending(used)), linear_crop(used))


def test_band_that_is_shorter_across_slot_zero_crosses_it() -> None:
    # Slots 5 and 100: 96 slots from 5 up to 100, but only 34 from 100 round to 5.
    np.testing.assert_array_equal(shown_slots(attending([5, 100])), [*range(98, 128), *range(8)])


def test_nothing_attended_shows_every_slot() -> None:
    np.testing.assert_array_equal(shown_slots(np.zeros((4, 1, N))), np.arange(N))
    np.testing.assert_array_equal(shown_slots(np.full((4, 2, N), 0.005)), np.arange(N))


def test_everything_attended_shows_every_slot() -> None:
    np.testing.assert_array_equal(shown_slots(np.full((1, 1, N), 1.0 / N)), np.arange(N))
    # A band across slot 0 that with its margin would cover the memory covers it once.
    np.testing.assert_array_equal(
        shown_slots(attending([*range(64, 128), *range(62)])), np.arange(N)
    )


@settings(max_examples=300, deadline=None)
@given(st.integers(3, 40).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)))))
def test_band_holds_every_used_slot_in_one_short_circular_run(case: tuple[int, set[int]]) -> None:
    count, used = case
    slots = shown_slots(attending(sorted(used), count))
    assert len(set(slots.tolist())) == len(slots) <= count
    assert ((np.diff(slots) % count) == 1).all()  # one run around the circle
    assert set(used) <= set(slots.tolist())
    if used:
        arc = shortest_arc(sorted(used), count)
        assert len(slots) <= arc + 2 * SLOT_MARGIN
        if max(used) - min(used) + 1 == arc:
            np.testing.assert_array_equal(slots, linear_crop(sorted(used), count))


def test_ticks_label_rows_with_true_slot_indices() -> None:
    rows, labels = slot_ticks(np.array([*range(123, 128), *range(7)]))
    assert labels == ["124", "126", "0", "2", "4", "6"]
    np.testing.assert_array_equal(rows, [1, 3, 5, 7, 9, 11])
    rows, labels = slot_ticks(np.arange(N))
    assert labels == ["0", "20", "40", "60", "80", "100", "120"]
    np.testing.assert_array_equal(rows, [0, 20, 40, 60, 80, 100, 120])
    rows, labels = slot_ticks(np.arange(38, 53), most=6)
    assert labels == ["40", "45", "50"]
    np.testing.assert_array_equal(rows, [2, 7, 12])


@pytest.mark.parametrize("most", [2, 8])
@pytest.mark.parametrize("count", [1, 5, 19, 60, 128])
@pytest.mark.parametrize("start", [0, 7, 120])
def test_ticks_are_few_and_name_their_rows(most: int, count: int, start: int) -> None:
    slots = (start + np.arange(count)) % N
    rows, labels = slot_ticks(slots, most=most)
    assert 1 <= len(rows) <= most
    assert labels == [str(slots[r]) for r in rows]


def fake_sequence(writes: list[int], reads: list[int]) -> tuple[Batch, np.ndarray, NTMTrace]:
    steps, bits = len(writes), 3
    inputs = torch.zeros(steps, 1, bits)
    mask = torch.zeros(steps, 1, dtype=torch.bool)
    mask[steps // 2 :] = True
    batch = Batch(inputs, torch.zeros(steps, 1, bits), mask)
    trace = NTMTrace(
        read_weights=torch.from_numpy(attending(reads)).unsqueeze(1).float(),  # (T, 1, 1, N)
        write_weights=torch.from_numpy(attending(writes)).unsqueeze(1).float(),
        reads=torch.zeros(steps, 1, 1, 4),
        memory=torch.zeros(steps, 1, 128, 4),
        erase=torch.zeros(steps, 1, 1, 4),
        add=torch.zeros(steps, 1, 1, 4),
    )
    return batch, np.zeros((steps, bits)), trace


def test_sequence_figure_draws_the_band_across_slot_zero_with_true_labels() -> None:
    writes, reads = [125, 126, 127, 0, 1, 2], [127, 0, 1, 2, 3, 4]
    fig = sequence_figure(*fake_sequence(writes, reads), "wrapping")
    try:
        panels = {ax.get_title(loc="left"): ax for ax in fig.axes}
        for name, attended in (
            ("write weighting, head 0", writes),
            ("read weighting, head 0", reads),
        ):
            ax = panels[name]
            image = np.asarray(ax.get_images()[0].get_array())
            assert image.shape == (12, len(writes))  # slots 123 .. 127, 0 .. 6
            ticks = [int(row) for row in ax.get_yticks()]
            labels = dict(zip(ticks, (t.get_text() for t in ax.get_yticklabels()), strict=True))
            assert list(labels.values()) == ["125", "0", "5"]
            # Where the row a head lit up carries a label, it is the slot that head attended.
            lit = {int(row): str(slot) for row, slot in zip(image.argmax(0), attended, strict=True)}
            both = labels.keys() & lit.keys()
            assert "0" in {lit[row] for row in both}
            assert all(labels[row] == lit[row] for row in both)
    finally:
        plt.close(fig)


def test_draw_sequence_writes_a_picture(tmp_path: Path) -> None:
    path = tmp_path / "sequence.png"
    draw_sequence(path, *fake_sequence([40, 41, 42], [40, 40, 41]), "plain")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
