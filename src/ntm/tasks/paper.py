"""The paper's five tasks (Graves et al., 2014, §4.1-4.5).

Every task is a small dataclass with the paper's settings as defaults. ``sample(batch_size,
generator)`` draws a time-major :class:`Batch`; sequences of different lengths in one batch
are padded at the end, and ``mask`` says which (step, sequence) pairs are scored.

Dimension legend: ``T`` time, ``B`` batch, ``I`` input channels, ``O`` target channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ntm.config import require
from ntm.registry import Recipe, register_task
from ntm.tasks.contract import Batch, _check_batch_size, _random_bits, _TaskBase, _uniform_int
from ntm.tasks.scoring import cost_bits


@dataclass(frozen=True)
class CopyTask(_TaskBase):
    """Copy (§4.1): a random sequence of bit vectors, a delimiter, then the same sequence.

    Inputs: ``bits`` data channels and a delimiter channel (the last). Targets: the ``bits``
    data channels, scored only while the network answers (the ``L`` steps after the
    delimiter). An episode of length ``L`` lasts ``2L + 1`` steps.
    """

    name: ClassVar[str] = "copy"
    #: The paper's generalisation settings (§4): (label, settings changed).
    generalisation: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        ("length 20", {"min_length": 20, "max_length": 20}),
        ("length 30", {"min_length": 30, "max_length": 30}),
        ("length 50", {"min_length": 50, "max_length": 50}),
        ("length 120", {"min_length": 120, "max_length": 120}),
    ]
    curriculum: ClassVar[tuple[str, str]] = ("max_length", "min_length")
    bits: int = 8
    min_length: int = 1
    max_length: int = 20

    def __post_init__(self) -> None:
        require(self.bits >= 1, type(self).__name__, "bits", self.bits, "an integer >= 1")
        self._require_range("min_length", "max_length", 1)

    def ladder(self) -> list[tuple[str, dict[str, Any]]]:
        """Lengths 2, 4 and 8 times the longest trained on."""
        return [
            (f"length {k * self.max_length} (x{k})",
             {"min_length": k * self.max_length, "max_length": k * self.max_length})
            for k in (2, 4, 8)
        ]  # fmt: skip

    @property
    def input_size(self) -> int:
        return self.bits + 1

    @property
    def output_size(self) -> int:
        return self.bits

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        _check_batch_size(type(self).__name__, batch_size)
        lengths = _uniform_int(self.min_length, self.max_length, batch_size, generator)
        data = _random_bits((int(lengths.max()), batch_size, self.bits), generator)
        return self._episodes(lengths, data)

    def sample_seeded(self, seeds: Sequence[int]) -> Batch:
        # The draws of sample(1, generator) per seed, and the batch built once: a training
        # batch costs 0.3 ms instead of 9 (32 sequences, one thread).
        generator = torch.Generator()
        lengths, data = [], []
        for seed in seeds:
            generator.manual_seed(seed)
            length = _uniform_int(self.min_length, self.max_length, 1, generator)
            lengths.append(length)
            data.append(_random_bits((int(length), 1, self.bits), generator))
        longest = max(int(length) for length in lengths)
        bits = torch.zeros(longest, len(data), self.bits)
        for slot, sequence in enumerate(data):
            bits[: sequence.shape[0], slot] = sequence[:, 0]
        return self._episodes(torch.cat(lengths), bits)

    def _episodes(self, lengths: Tensor, data: Tensor) -> Batch:
        """Episodes of the sequences ``data[:lengths[b], b]`` (data: (longest, B, bits))."""
        longest, batch_size = int(lengths.max()), lengths.shape[0]
        steps = 2 * longest + 1
        inputs = torch.zeros(steps, batch_size, self.input_size)
        targets = torch.zeros(steps, batch_size, self.output_size)
        mask = torch.zeros(steps, batch_size, dtype=torch.bool)
        # Every (step, sequence) inside its sequence, at once rather than per sequence.
        step, seq = (torch.arange(longest).unsqueeze(1) < lengths).nonzero(as_tuple=True)
        inputs[step, seq, : self.bits] = data[step, seq]
        inputs[lengths, torch.arange(batch_size), self.bits] = 1.0  # delimiter
        answer = lengths[seq] + 1 + step
        targets[answer, seq] = data[step, seq]
        mask[answer, seq] = True
        return Batch(inputs, targets, mask)


@dataclass(frozen=True)
class RepeatCopyTask(_TaskBase):
    """Repeat copy (§4.2): a sequence, then a repeat count; the target is the sequence that
    many times, then an end marker.

    Inputs: ``bits`` data channels, a delimiter channel, and a repeat-count channel. The
    step after the sequence carries the delimiter and the count, normalised with the
    training distribution's mean and standard deviation (``(R - 5.5) / sqrt(8.25)`` for the
    paper's 1..10), also for counts outside it. Targets: ``bits`` data channels and an end
    marker channel (the last), scored for the ``R * L + 1`` answering steps. With
    ``end_marker=False`` there is neither the marker channel nor its step (``R * L`` scored
    steps): not the paper's task, but a first stage from which an NTM learns to use its
    memory (an end marker to predict from the start keeps it from finding that; see
    ``docs/results.md``), continued with ``--init-from``.
    """

    name: ClassVar[str] = "repeat_copy"
    generalisation: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        ("L=10, R=20", {"min_length": 10, "max_length": 10, "min_repeats": 20, "max_repeats": 20}),
        ("L=20, R=10", {"min_length": 20, "max_length": 20, "min_repeats": 10, "max_repeats": 10}),
    ]
    curriculum: ClassVar[tuple[str, str]] = ("max_length", "min_length")
    bits: int = 8
    min_length: int = 1
    max_length: int = 10
    min_repeats: int = 1
    max_repeats: int = 10
    repeat_mean: float = 5.5  # mean of uniform 1..10, the paper's training distribution
    repeat_std: float = math.sqrt(8.25)  # its standard deviation
    end_marker: bool = True  # False: no end-marker channel or step (a stage of training)

    def __post_init__(self) -> None:
        owner = type(self).__name__
        require(self.bits >= 1, owner, "bits", self.bits, "an integer >= 1")
        self._require_range("min_length", "max_length", 1)
        self._require_range("min_repeats", "max_repeats", 1)
        require(self.repeat_std > 0, owner, "repeat_std", self.repeat_std, "a number > 0")

    def ladder(self) -> list[tuple[str, dict[str, Any]]]:
        """Sequences twice as long, twice as many repeats, and both."""
        length, repeats = 2 * self.max_length, 2 * self.max_repeats
        longer = {"min_length": length, "max_length": length}
        more = {"min_repeats": repeats, "max_repeats": repeats}
        return [
            (f"L={length} (x2)", longer),
            (f"R={repeats} (x2)", more),
            (f"L={length}, R={repeats} (x2, x2)", {**longer, **more}),
        ]

    @property
    def input_size(self) -> int:
        return self.bits + 2

    @property
    def output_size(self) -> int:
        return self.bits + int(self.end_marker)

    def normalise_repeats(self, repeats: Tensor) -> Tensor:
        return (repeats.float() - self.repeat_mean) / self.repeat_std

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        _check_batch_size(type(self).__name__, batch_size)
        lengths = _uniform_int(self.min_length, self.max_length, batch_size, generator)
        repeats = _uniform_int(self.min_repeats, self.max_repeats, batch_size, generator)
        totals = lengths + 1 + lengths * repeats + int(self.end_marker)
        steps = int(totals.max())
        data = _random_bits((int(lengths.max()), batch_size, self.bits), generator)
        counts = self.normalise_repeats(repeats)
        inputs = torch.zeros(steps, batch_size, self.input_size)
        targets = torch.zeros(steps, batch_size, self.output_size)
        mask = torch.zeros(steps, batch_size, dtype=torch.bool)
        for b, (length, repeat) in enumerate(zip(lengths.tolist(), repeats.tolist(), strict=True)):
            sequence = data[:length, b]
            inputs[:length, b, : self.bits] = sequence
            inputs[length, b, self.bits] = 1.0  # delimiter
            inputs[length, b, self.bits + 1] = counts[b]  # repeat count
            start = length + 1
            answer = length * repeat
            targets[start : start + answer, b, : self.bits] = sequence.repeat(repeat, 1)
            if self.end_marker:
                targets[start + answer, b, self.bits] = 1.0  # end marker
            mask[start : start + answer + int(self.end_marker), b] = True
        return Batch(inputs, targets, mask)


@dataclass(frozen=True)
class AssociativeRecallTask(_TaskBase):
    """Associative recall (§4.3): a list of items, then one of them; answer the next item.

    An item is ``item_length`` vectors of ``bits`` bits. Inputs: ``bits`` data channels, an
    item delimiter and a query delimiter. Each item is preceded by an item-delimiter step;
    the query item is enclosed by query-delimiter steps; then the network answers with the
    item that followed the query (``item_length`` scored steps). The query is never the last
    item.
    """

    name: ClassVar[str] = "associative_recall"
    generalisation: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        ("12 items", {"min_items": 12, "max_items": 12}),
        ("15 items", {"min_items": 15, "max_items": 15}),
    ]
    curriculum: ClassVar[tuple[str, str]] = ("max_items", "min_items")
    bits: int = 6
    item_length: int = 3
    min_items: int = 2
    max_items: int = 6

    def __post_init__(self) -> None:
        owner = type(self).__name__
        require(self.bits >= 1, owner, "bits", self.bits, "an integer >= 1")
        require(self.item_length >= 1, owner, "item_length", self.item_length, "an integer >= 1")
        self._require_range("min_items", "max_items", 2)

    def ladder(self) -> list[tuple[str, dict[str, Any]]]:
        """Lists 2 and 4 times as long as the longest trained on."""
        return [
            (f"{k * self.max_items} items (x{k})",
             {"min_items": k * self.max_items, "max_items": k * self.max_items})
            for k in (2, 4)
        ]  # fmt: skip

    @property
    def input_size(self) -> int:
        return self.bits + 2

    @property
    def output_size(self) -> int:
        return self.bits

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        _check_batch_size(type(self).__name__, batch_size)
        counts = _uniform_int(self.min_items, self.max_items, batch_size, generator)
        span = self.item_length + 1  # delimiter + item
        steps = int(counts.max()) * span + span + 1 + self.item_length
        items = _random_bits(
            (int(counts.max()), self.item_length, batch_size, self.bits), generator
        )
        # Query index uniform in 0..count-2: floor(u * (count - 1)).
        fractions = torch.rand(batch_size, generator=generator)
        queries = (fractions * (counts - 1).float()).long().clamp(max=counts - 2)
        inputs = torch.zeros(steps, batch_size, self.input_size)
        targets = torch.zeros(steps, batch_size, self.output_size)
        mask = torch.zeros(steps, batch_size, dtype=torch.bool)
        item_delimiter, query_delimiter = self.bits, self.bits + 1
        for b, (count, query) in enumerate(zip(counts.tolist(), queries.tolist(), strict=True)):
            for i in range(count):
                inputs[i * span, b, item_delimiter] = 1.0
                inputs[i * span + 1 : (i + 1) * span, b, : self.bits] = items[i, :, b]
            t = count * span
            inputs[t, b, query_delimiter] = 1.0
            inputs[t + 1 : t + span, b, : self.bits] = items[query, :, b]
            inputs[t + span, b, query_delimiter] = 1.0
            answer = t + span + 1
            targets[answer : answer + self.item_length, b] = items[query + 1, :, b]
            mask[answer : answer + self.item_length, b] = True
        return Batch(inputs, targets, mask)


@dataclass(frozen=True)
class NGramsTask(_TaskBase):
    """Dynamic n-grams (§4.4): predict the next bit of a sequence from a random 6-gram model.

    Per episode the ``2 ** (order - 1)`` probabilities ``P(next = 1 | last order - 1 bits)``
    are drawn from Beta(1/2, 1/2); the first ``order - 1`` bits are fair coin flips. The
    network sees one bit per step and predicts the next: ``length`` steps, every one scored
    (``length + 1`` bits are drawn).
    """

    name: ClassVar[str] = "ngrams"
    target: ClassVar[Recipe] = Recipe(
        train={"target_bit_errors": 0.0, "target_excess": 1.0},
        why="judged as the paper does: against the Bayes-optimal cost of the same sequences",
    )
    length: int = 200
    order: int = 6  # n of the n-gram: the context is the last n - 1 = 5 bits

    def __post_init__(self) -> None:
        owner = type(self).__name__
        require(self.length >= 1, owner, "length", self.length, "an integer >= 1")
        require(self.order >= 2, owner, "order", self.order, "an integer >= 2")

    def ladder(self) -> list[tuple[str, dict[str, Any]]]:
        """Sequences 2 and 4 times as long."""
        return [(f"length {k * self.length} (x{k})", {"length": k * self.length}) for k in (2, 4)]

    @property
    def input_size(self) -> int:
        return 1

    @property
    def output_size(self) -> int:
        return 1

    def sample_probabilities(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Per episode, P(next bit = 1 | context) for every context: (B, 2 ** (order - 1))."""
        # Beta(1/2, 1/2) is the arcsine law: sin^2 of an angle uniform in [0, pi/2].
        angles = torch.rand(batch_size, 2 ** (self.order - 1), generator=generator) * (math.pi / 2)
        return torch.sin(angles).pow(2)

    def sample_bits(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """The raw episodes: (length + 1, B) bits as floats."""
        _check_batch_size(type(self).__name__, batch_size)
        context = self.order - 1
        table = self.sample_probabilities(batch_size, generator)  # (B, 2^context)
        total = self.length + 1
        uniforms = torch.rand(total, batch_size, generator=generator)
        # The chain is sequential in time; plain Python over each episode is several times
        # faster than a tensor operation per step at these sizes (same comparisons, exact).
        columns, tables = uniforms.t().tolist(), table.tolist()
        mask = 2**context - 1
        episodes = []
        for draws, probs in zip(columns, tables, strict=True):
            episode, index = [], 0
            for t, u in enumerate(draws):
                bit = int(u < (0.5 if t < context else probs[index]))
                episode.append(bit)
                index = ((index << 1) | bit) & mask
            episodes.append(episode)
        return torch.tensor(episodes, dtype=torch.float32).t().contiguous()

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        bits = self.sample_bits(batch_size, generator)
        inputs = bits[:-1].unsqueeze(-1)  # (T, B, 1)
        targets = bits[1:].unsqueeze(-1)
        mask = torch.ones(self.length, batch_size, dtype=torch.bool)
        return Batch(inputs, targets, mask)

    def optimal_predictions(self, inputs: Tensor, window: int | None = None) -> Tensor:
        """Bayes-optimal P(next bit = 1) at every step, given the bits seen so far.

        ``(N1 + 1/2) / (N1 + N0 + 1)`` with the counts of ones and zeros that followed the
        current context earlier in the same sequence; 1/2 before a full context is seen.
        With ``window``, only the last ``window`` transitions (a context and the bit after
        it) are counted: the Bayes-optimal prediction of a model that keeps no more than
        those (an NTM writing one memory slot per step keeps as many as it has slots).

        Shape: inputs (T, B, 1) -> (T, B, 1)
        """
        if window is not None:
            require(window >= 1, type(self).__name__, "window", window, "an integer >= 1")
        bits = inputs[..., 0].long()  # (T, B)
        steps, batch_size = bits.shape
        context = self.order - 1
        ones = torch.zeros(batch_size, 2**context)
        zeros = torch.zeros(batch_size, 2**context)
        rows = torch.arange(batch_size)
        predictions = torch.full((steps, batch_size), 0.5)
        index = torch.zeros(batch_size, dtype=torch.long)
        seen: list[Tensor] = []  # the context of every transition counted, oldest first
        mask = 2**context - 1
        for t in range(steps):
            if t >= context:
                # bits[t - context .. t - 1] form ``index``; bits[t] followed it.
                ones[rows, index] += bits[t].float()
                zeros[rows, index] += 1.0 - bits[t].float()
                if window is not None:
                    seen.append(index)
                    if len(seen) > window:  # forget the transition that ended at t - window
                        old = seen.pop(0)
                        ones[rows, old] -= bits[t - window].float()
                        zeros[rows, old] -= 1.0 - bits[t - window].float()
            index = ((index << 1) | bits[t]) & mask
            if t + 1 >= context:
                n1, n0 = ones[rows, index], zeros[rows, index]
                predictions[t] = (n1 + 0.5) / (n1 + n0 + 1.0)
        return predictions.unsqueeze(-1)

    def optimal_cost(self, batch: Batch) -> float:
        """Cost in bits per sequence of the Bayes-optimal predictor on ``batch``."""
        probabilities = self.optimal_predictions(batch.inputs)
        return cost_bits(torch.logit(probabilities.double()), batch.targets, batch.mask)


@dataclass(frozen=True)
class PrioritySortTask(_TaskBase):
    """Priority sort (§4.5): vectors with scalar priorities; output the highest, sorted.

    Inputs: ``bits`` data channels, a priority channel (uniform in [-1, 1]) and a delimiter
    channel. ``num_inputs`` steps of (vector, priority), a delimiter step, then
    ``num_outputs`` scored steps: the ``num_outputs`` highest-priority vectors in
    descending order of priority.
    """

    name: ClassVar[str] = "priority_sort"
    target: ClassVar[Recipe] = Recipe(
        train={"target_bit_errors": 0.0, "target_cost": 20.0, "max_sequences": 1_200_000},
        why="judged by cost: the paper's NTM reached 18 to 20 bits after about a million sequences",
    )
    bits: int = 8
    num_inputs: int = 20
    num_outputs: int = 16

    def __post_init__(self) -> None:
        owner = type(self).__name__
        require(self.bits >= 1, owner, "bits", self.bits, "an integer >= 1")
        require(self.num_inputs >= 1, owner, "num_inputs", self.num_inputs, "an integer >= 1")
        require(
            1 <= self.num_outputs <= self.num_inputs,
            owner,
            "num_outputs",
            self.num_outputs,
            f"an integer in 1..num_inputs = {self.num_inputs}",
        )

    def ladder(self) -> list[tuple[str, dict[str, Any]]]:
        """Twice as many inputs to sort, and outputs in proportion."""
        changes = {"num_inputs": 2 * self.num_inputs, "num_outputs": 2 * self.num_outputs}
        return [(f"{2 * self.num_inputs} inputs (x2)", changes)]

    @property
    def input_size(self) -> int:
        return self.bits + 2

    @property
    def output_size(self) -> int:
        return self.bits

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        _check_batch_size(type(self).__name__, batch_size)
        n_in, n_out = self.num_inputs, self.num_outputs
        data = _random_bits((n_in, batch_size, self.bits), generator)
        priorities = torch.rand(n_in, batch_size, generator=generator) * 2.0 - 1.0
        order = priorities.argsort(dim=0, descending=True)[:n_out]  # (n_out, B)
        steps = n_in + 1 + n_out
        inputs = torch.zeros(steps, batch_size, self.input_size)
        inputs[:n_in, :, : self.bits] = data
        inputs[:n_in, :, self.bits] = priorities
        inputs[n_in, :, self.bits + 1] = 1.0  # delimiter
        targets = torch.zeros(steps, batch_size, self.output_size)
        targets[n_in + 1 :] = torch.gather(data, 0, order.unsqueeze(-1).expand(-1, -1, self.bits))
        mask = torch.zeros(steps, batch_size, dtype=torch.bool)
        mask[n_in + 1 :] = True
        return Batch(inputs, targets, mask)


#: The paper's five tasks by name (every registered task: :func:`ntm.registry.tasks`).
TASKS: dict[str, type[Any]] = {
    task.name: register_task(task.name, task)
    for task in (CopyTask, RepeatCopyTask, AssociativeRecallTask, NGramsTask, PrioritySortTask)
}
