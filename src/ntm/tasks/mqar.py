"""Multi-query associative recall (MQAR; Arora et al., "Zoology", 2023), a token task.

A sequence of ``length`` tokens opens with ``num_pairs`` key-value pairs ``k1 v1 k2 v2 ...``,
keys drawn without replacement from the first half of the vocabulary (tokens 1 to
``vocab_size / 2 - 1``; token 0 is never a key) and values, with replacement, from the second
half. In the rest of the sequence every key is asked once, in a random order, at the even
positions Zoology uses, nearer positions more likely (probability proportional to
``gap ** (alpha - 1)``, ``alpha`` = 0.01, Zoology's power law). The positions between the
queries hold tokens drawn uniformly from the whole vocabulary (``random_fill``, Zoology's
default), or token 0 with ``random_fill=False``. The target at a query is the value that
followed its key; only queries are scored.

``answer_delay=1`` asks for the value one step after its query instead (at the fill
token that follows it; queries sit at even positions, so it never meets another). Not
Zoology's task: a diagnostic. A recurrent memory that writes each token to a slot of its
own reaches a value from its key in two moves, to the key's slot by content and on to the
next slot by a link or a shift, and a step gives it one.

Tokens are one-hot vectors of ``vocab_size`` channels in and out (``tokens = True``): every
model's input layer is then its embedding, and its output layer a vocabulary-sized
classifier, scored by cross-entropy (:func:`ntm.tasks.scoring`).

The defaults (a vocabulary of 64, 4 pairs, 32 tokens) are small enough for a model to reach
the target within ``benchmarks/compare.py``'s budget on two CPU cores, and leave keys for
the ladder's 8 and 16 pairs. Zoology's own settings (a vocabulary of 8,192, from 4 pairs in
64 tokens to 64 in 512; it finds vocabularies over 1,000 tell architectures apart better)
are ``--task-arg`` settings away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ntm.config import require
from ntm.registry import register_task
from ntm.tasks.contract import Batch, _check_batch_size, _TaskBase

#: Zoology's power law for the distance from the pairs to a key's query.
ALPHA = 0.01


@dataclass(frozen=True)
class MQARTask(_TaskBase):
    """Multi-query associative recall: ``num_pairs`` key-value pairs, then every key asked
    once; answer its value. See the module's description."""

    name: ClassVar[str] = "mqar"
    tokens: ClassVar[bool] = True
    vocab_size: int = 64
    num_pairs: int = 4
    length: int = 32
    random_fill: bool = True
    answer_delay: int = 0  # steps from a query to its answer: 0 (Zoology's) or 1

    def __post_init__(self) -> None:
        owner = type(self).__name__
        require(self.vocab_size >= 6, owner, "vocab_size", self.vocab_size, "an integer >= 6")
        keys = self.vocab_size // 2 - 1
        require(
            1 <= self.num_pairs <= keys,
            owner,
            "num_pairs",
            self.num_pairs,
            f"an integer from 1 to {keys} (the keys of a vocabulary of {self.vocab_size})",
        )
        require(
            self.length >= 4 * self.num_pairs,
            owner,
            "length",
            self.length,
            f"an integer >= 4 * num_pairs = {4 * self.num_pairs} (pairs, then a query slot "
            "every second position)",
        )
        require(self.answer_delay in (0, 1), owner, "answer_delay", self.answer_delay, "0 or 1")

    def ladder(self) -> list[tuple[str, dict[str, Any]]]:
        """Two and four times as many pairs in sequences as much longer, where the
        vocabulary has the keys for them."""
        keys = self.vocab_size // 2 - 1
        return [
            (f"{k * self.num_pairs} pairs (x{k})",
             {"num_pairs": k * self.num_pairs, "length": k * self.length})
            for k in (2, 4)
            if k * self.num_pairs <= keys
        ]  # fmt: skip

    @property
    def input_size(self) -> int:
        return self.vocab_size

    @property
    def output_size(self) -> int:
        return self.vocab_size

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        _check_batch_size(type(self).__name__, batch_size)
        half, pairs = self.vocab_size // 2, self.num_pairs
        keys = torch.rand(batch_size, half - 1, generator=generator).argsort(1)[:, :pairs] + 1
        values = torch.randint(half, self.vocab_size, (batch_size, pairs), generator=generator)
        slots = (self.length - 2 * pairs) // 2
        weights = torch.arange(1, slots + 1, dtype=torch.float64) ** (ALPHA - 1)
        gaps = torch.multinomial(weights.expand(batch_size, slots), pairs, generator=generator)
        tokens = torch.zeros(batch_size, self.length, dtype=torch.long)
        if self.random_fill:
            tokens = torch.randint(0, self.vocab_size, tokens.shape, generator=generator)
        tokens[:, 0 : 2 * pairs : 2] = keys
        tokens[:, 1 : 2 * pairs : 2] = values
        where = 2 * pairs + 2 * gaps  # the queries' positions, (B, pairs)
        tokens.scatter_(1, where, keys)
        answered = where + self.answer_delay  # (B, pairs); the last query <= length - 2
        answers = torch.zeros_like(tokens)
        answers.scatter_(1, answered, values)
        mask = torch.zeros(batch_size, self.length, dtype=torch.bool)
        mask.scatter_(1, answered, True)
        return Batch(self._one_hot(tokens), self._one_hot(answers), mask.t().contiguous())

    def _one_hot(self, tokens: Tensor) -> Tensor:
        """(B, T) token ids as time-major one-hot vectors, (T, B, vocab_size)."""
        return torch.nn.functional.one_hot(tokens.t(), self.vocab_size).float()


register_task(MQARTask.name, MQARTask)
