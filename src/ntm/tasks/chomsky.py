"""The fifteen tasks of "Neural Networks and the Chomsky Hierarchy", as token tasks.

Delétang et al. (ICLR 2023; arXiv 2207.02098; code: google-deepmind/
neural_networks_chomsky_hierarchy) group fifteen sequence tasks by the level of the Chomsky
hierarchy that solves them, train on lengths 1 to 40 and test on every length from 41 to
500 (the paper's experimental setup); the score is the per-token accuracy of the answer,
averaged over the test lengths. The tasks are defined in the paper's appendix (each task's
docstring names its entry there) and in its code, whose details (vocabularies, symbol
order, answer lengths, the short lengths' special cases) are followed here. Each is
registered under the name the paper's code gives it:

- regular: ``even_pairs``, ``modular_arithmetic``, ``parity_check``, ``cycle_navigation``;
- deterministic context-free: ``stack_manipulation``, ``reverse_string``,
  ``modular_arithmetic_brackets``, ``solve_equation``;
- context-sensitive: ``duplicate_string``, ``missing_duplicate_string``, ``odds_first``,
  ``binary_addition``, ``binary_multiplication``, ``compute_sqrt``, ``bucket_sort``.

**Layout** (the paper's for its recurrent models, without autoregression or extra
computation steps): the model reads the ``n`` input symbols, one a step, then answers during
as many further steps as the answer has tokens, each of them an input of one extra channel,
the query symbol ``?`` (always the last input channel). Only the answer steps are scored.
A sequence lasts ``n + answer length`` steps; sequences of different lengths in a batch are
padded at the end, unscored. Where the paper ends an answer with a termination token ``$``
and pads it with zeros to a fixed length (stack manipulation, binary addition and
multiplication), the answer here stops at the ``$``: the paper scores nothing after it, and
no causal model's scored outputs depend on the steps that would follow. (The paper's loss
also covers those padding zeros; here the loss and the score both see only the answer.)

**Lengths**: every task has ``min_length`` (1) and ``max_length`` (40), and draws each
sequence's length ``n`` uniformly between them, ``n`` meaning what the paper's code means by
a task's length (the input's symbols, except where a task's docstring says otherwise).
Training draws one length per batch, as the paper's training loop does (``length_per``
``"batch"``, the default: ``ntm train`` draws each update's batch from
:meth:`~_ChomskyTask.batch_variant`, every sequence's input of that length, padded only
where answers differ in length); with ``length_per`` ``"sequence"`` each sequence of a batch
draws its own, as run folders saved before the setting existed did (they resume so).
``sample`` and the held-out sets draw one length per sequence either way, so that one
held-out set covers every training length.

**Ladder** (``ntm eval RUN --ladder``): the paper's test lengths, every 27th
(:data:`LADDER_STRIDE`) from one past ``max_length`` up to :data:`LONGEST_TEST`, and that one
too: 41, 68, 95, ..., 473, 500 for the default ``max_length`` of 40, eighteen lengths evenly
spread over the paper's 460. The paper averages all 460; eighteen keep the climb
affordable on a CPU (the longest answers run to 1,000 steps) and their mean estimates the
same average. Before them it shows :data:`WITHIN_POINTS` lengths inside training, a
quarter, a half, three quarters of ``max_length`` and ``max_length`` itself (10, 20, 30,
40), none below ``min_length``: where a model that does not fit the training lengths begins
to fail. Evaluation reports each
length's per-token accuracy and the mean over the test lengths
(:mod:`ntm.runs.evaluation`).

**Vocabularies**: ``vocabulary`` names the input channels in order (the task's symbols, then
``?``) and ``output_vocabulary`` the target channels; they differ in every task, if only by
``?``. :func:`render` reads one sequence of a batch back as text, ``input -> answer``, and
:func:`example` does so for a seeded sample; every task's docstring shows one, which
``tests/test_chomsky.py`` checks against the code.

Dimension legend: ``T`` time, ``B`` batch, ``I`` input channels, ``O`` target channels.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ntm.config import require
from ntm.registry import Recipe, register_task
from ntm.tasks.contract import Batch, _check_batch_size, _TaskBase, _uniform_int

#: The input symbol of the answer steps (the last input channel of every task).
QUERY = "?"

#: The paper's termination token, which ends the answers of variable length.
END = "$"

#: The longest test length of the paper (it tests on every length from 41 to 500).
LONGEST_TEST = 500

#: The step between the ladder's lengths: 41, 68, ..., 500, eighteen lengths.
LADDER_STRIDE = 27

#: How many lengths inside training the ladder shows first, evenly spread up to the longest.
WITHIN_POINTS = 4

#: What ``ntm train`` stops at on these tasks, unless told otherwise.
TARGET = Recipe(
    train={"target_bit_errors": 0.02},
    why="the training lengths all but learned (98% of one-token answers right); the "
    "paper's score is the ladder beyond them",
)


def _bits(value: int, width: int) -> list[int]:
    """The ``width`` lowest bits of ``value``, least significant first."""
    return [(value >> i) & 1 for i in range(width)]


def _least_first(value: int) -> list[int]:
    """``value`` in binary, least significant bit first, without leading zeros ([0] for 0)."""
    return _bits(value, max(value.bit_length(), 1))


def _positive(rng: random.Random, width: int) -> int:
    """An integer uniform in [1, 2 ** width - 1]."""
    return rng.randint(1, 2**width - 1)


def _spell(vocabulary: list[str], tokens: list[int]) -> str:
    """Tokens as text: run together where every symbol is one character, else spaced."""
    words = [vocabulary[t] for t in tokens]
    return ("" if all(len(w) == 1 for w in vocabulary) else " ").join(words)


def render(task: Any, batch: Batch, index: int = 0) -> str:
    """Sequence ``index`` of ``batch`` as text, ``input -> answer``: the symbols it reads
    (not the query steps), then the targets of its scored steps, in ``task``'s
    vocabularies."""
    inputs, targets, mask = batch.inputs[:, index], batch.targets[:, index], batch.mask[:, index]
    read = (inputs.sum(-1) > 0) & (inputs[:, -1] == 0)  # a symbol, not the query or padding
    symbols = inputs[read].argmax(-1).tolist()
    answer = targets[mask].argmax(-1).tolist()
    question = _spell(task.vocabulary, symbols)
    return f"{question} -> {_spell(task.output_vocabulary, answer)}"


def example(task: Any, seed: int = 0) -> str:
    """:func:`render` of one sequence of ``task`` drawn from a generator seeded with ``seed``
    (the samples in the tasks' docstrings)."""
    return render(task, task.sample(1, torch.Generator().manual_seed(seed)))


@dataclass(frozen=True)
class _ChomskyTask(_TaskBase):
    """What the tasks share: lengths, the layout, the ladder, the vocabularies (see the
    module's description). A task says its symbols, its answer symbols and how one
    sequence is drawn (:meth:`_draw`)."""

    name: ClassVar[str]
    tokens: ClassVar[bool] = True
    target: ClassVar[Recipe] = TARGET
    min_length: int = 1
    max_length: int = 40
    #: What shares a length in training: each ``batch`` (the paper's) or each ``sequence``.
    length_per: str = "batch"
    #: ``length_per`` changes the training batches only: ``sample`` draws a length per
    #: sequence, so a held-out set is described without it.
    batch_settings: ClassVar[tuple[str, ...]] = ("length_per",)
    #: Runs saved before ``length_per`` existed drew a length per sequence.
    settings_before: ClassVar[dict[str, Any]] = {"length_per": "sequence"}

    def __post_init__(self) -> None:
        self._require_range("min_length", "max_length", 1)
        owner = type(self).__name__
        allowed = ("batch", "sequence")
        require(
            self.length_per in allowed,
            owner,
            "length_per",
            self.length_per,
            " or ".join(map(repr, allowed)),
        )

    def batch_variant(self, seed: int) -> Any:
        """The task one training batch is drawn from, given its update's ``seed``: with
        ``length_per`` ``"batch"``, this task at one length drawn uniformly from
        ``min_length`` to ``max_length`` by a generator seeded with ``seed``; else itself."""
        if self.length_per != "batch" or self.min_length == self.max_length:
            return self
        generator = torch.Generator().manual_seed(seed)
        length = int(_uniform_int(self.min_length, self.max_length, 1, generator)[0])
        return self.with_settings(min_length=length, max_length=length)

    @property
    def symbols(self) -> list[str]:
        """The input symbols, in channel order (without the query)."""
        raise NotImplementedError

    @property
    def output_vocabulary(self) -> list[str]:
        """The answer symbols, in target channel order."""
        raise NotImplementedError

    def _draw(self, length: int, rng: random.Random) -> tuple[list[int], list[int]]:
        """One sequence of ``length``: its input symbols and its answer, as token ids."""
        raise NotImplementedError

    @property
    def vocabulary(self) -> list[str]:
        """The input channels by name: the symbols, then the query ``?``."""
        return [*self.symbols, QUERY]

    @property
    def input_size(self) -> int:
        return len(self.symbols) + 1

    @property
    def output_size(self) -> int:
        return len(self.output_vocabulary)

    def ladder(self) -> list[tuple[str, dict[str, Any]]]:
        """The paper's test lengths, every :data:`LADDER_STRIDE` (27) from ``max_length + 1``
        to :data:`LONGEST_TEST` and that one too (none where training reached it)."""
        lengths = list(range(self.max_length + 1, LONGEST_TEST + 1, LADDER_STRIDE))
        if lengths and lengths[-1] != LONGEST_TEST:
            lengths.append(LONGEST_TEST)
        return [(f"length {n}", {"min_length": n, "max_length": n}) for n in lengths]

    def within_training(self) -> list[tuple[str, dict[str, Any]]]:
        """Lengths inside the training range that ``ntm eval --ladder`` shows before the
        test lengths: ``max_length`` times 1/4, 2/4, 3/4 and 1 (:data:`WITHIN_POINTS`),
        rounded half up, each at least ``min_length``, without repeats (10, 20, 30, 40 for 1
        to 40)."""
        top, points = self.max_length, WITHIN_POINTS
        raised = (max(self.min_length, (top * k + points // 2) // points)
                  for k in range(1, points + 1))  # fmt: skip
        return [(f"length {n}", {"min_length": n, "max_length": n}) for n in sorted(set(raised))]

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        _check_batch_size(type(self).__name__, batch_size)
        return self._batch(self._drawn(batch_size, generator))

    def sample_seeded(self, seeds: Sequence[int]) -> Batch:
        """One sequence per seed, as ``sample(1, generator)`` draws it from a generator seeded
        with it, side by side (:func:`ntm.tasks.contract.one_per_seed`'s batch, made at once
        instead of sequence by sequence: the same tensors, several times faster)."""
        generator = torch.Generator()
        return self._batch(
            [pair for s in seeds for pair in self._drawn(1, generator.manual_seed(s))]
        )

    def _drawn(
        self, batch_size: int, generator: torch.Generator | None
    ) -> list[tuple[list[int], list[int]]]:
        """``batch_size`` sequences' (question, answer) token ids, drawn from ``generator``."""
        lengths = _uniform_int(self.min_length, self.max_length, batch_size, generator)
        # One seed per sequence from ``generator``; Python's generator then draws its symbols
        # (big integers, stacks and expression trees are Python's to draw and compute).
        seeds = torch.randint(0, 2**62, (batch_size,), generator=generator)
        return [
            self._draw(int(n), random.Random(int(s)))
            for n, s in zip(lengths.tolist(), seeds.tolist(), strict=True)
        ]

    def _batch(self, drawn: list[tuple[list[int], list[int]]]) -> Batch:
        """The batch of the drawn (question, answer) pairs, padded to the longest."""
        steps = max(len(question) + len(answer) for question, answer in drawn)
        query, no_input, no_target = self.input_size - 1, self.input_size, self.output_size
        read, said = [], []
        for question, answer in drawn:
            rest = steps - len(question) - len(answer)
            read.append(question + [query] * len(answer) + [no_input] * rest)
            said.append([no_target] * len(question) + answer + [no_target] * rest)
        reads, says = torch.tensor(read).t(), torch.tensor(said).t()  # (T, B)
        # One-hot with a last class for "nothing", dropped: padding is all zeros.
        inputs = F.one_hot(reads, no_input + 1)[..., :-1].float()  # (T, B, I)
        targets = F.one_hot(says, no_target + 1)[..., :-1].float()  # (T, B, O)
        return Batch(inputs, targets, says < no_target)


def _digits(count: int) -> list[str]:
    return [str(d) for d in range(count)]


# --- Regular ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StringTask(_ChomskyTask):
    """A task on a string of ``vocab_size`` symbols (digits) drawn uniformly, answered in the
    same symbols: a task says its default vocabulary and its answer (:meth:`_answer`)."""

    vocab_size: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        require(self.vocab_size >= 2, owner, "vocab_size", self.vocab_size, "an integer >= 2")

    @property
    def symbols(self) -> list[str]:
        return _digits(self.vocab_size)

    @property
    def output_vocabulary(self) -> list[str]:
        return _digits(self.vocab_size)

    def _draw(self, length: int, rng: random.Random) -> tuple[list[int], list[int]]:
        string = [rng.randrange(self.vocab_size) for _ in range(length)]
        return string, self._answer(string)

    def _answer(self, string: list[int]) -> list[int]:
        """The answer to ``string``."""
        raise NotImplementedError


@dataclass(frozen=True)
class _BinaryQuestion(_ChomskyTask):
    """A question about a binary string drawn uniformly, answered ``0`` or ``1`` in one
    token: a task says its answer (:meth:`_answer`)."""

    @property
    def symbols(self) -> list[str]:
        return ["0", "1"]

    @property
    def output_vocabulary(self) -> list[str]:
        return ["0", "1"]

    def _draw(self, length: int, rng: random.Random) -> tuple[list[int], list[int]]:
        string = [rng.randrange(2) for _ in range(length)]
        return string, [self._answer(string)]

    def _answer(self, string: list[int]) -> int:
        """The answer to ``string``, 0 or 1."""
        raise NotImplementedError


@dataclass(frozen=True)
class EvenPairs(_BinaryQuestion):
    """Even pairs (regular): a binary string; answer whether its pairs ``01`` and ``10``
    together are even in number (``0``) or odd (``1``) (the paper's appendix, "Even Pairs").

    Inputs ``0``, ``1``, ``?``; one answer token, ``0`` or ``1``.
    Sample (seed 0, length 12): ``000010111100 -> 0``
    """

    name: ClassVar[str] = "even_pairs"

    def _answer(self, string: list[int]) -> int:
        return sum(a != b for a, b in itertools.pairwise(string)) % 2


@dataclass(frozen=True)
class ModularArithmetic(_ChomskyTask):
    """Modular arithmetic, the paper's simple form (regular): numbers below ``modulus``
    joined by ``+``, ``-`` and ``*``, drawn uniformly; answer the expression's value modulo
    ``modulus``, ``*`` before ``+`` and ``-``, left to right (appendix, "Modular Arithmetic
    (Simple)").

    An expression has an odd length: an even ``length`` gives one of ``length - 1``, as in
    the paper's code. Inputs: the digits, ``+``, ``-``, ``*``, ``_`` (the paper's blank,
    kept as a channel for its input size but never drawn), ``?``; one answer token, a digit.
    Sample (seed 0, length 11): ``1+0-0*1-3*4 -> 4``
    """

    name: ClassVar[str] = "modular_arithmetic"
    modulus: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        require(self.modulus >= 2, owner, "modulus", self.modulus, "an integer >= 2")

    @property
    def symbols(self) -> list[str]:
        return [*_digits(self.modulus), "+", "-", "*", "_"]

    @property
    def output_vocabulary(self) -> list[str]:
        return _digits(self.modulus)

    def _draw(self, length: int, rng: random.Random) -> tuple[list[int], list[int]]:
        terms = length // 2 + 1 if length % 2 else length // 2
        numbers = [rng.randrange(self.modulus) for _ in range(terms)]
        operators = [rng.randrange(3) for _ in range(terms - 1)]  # +, -, *
        expression = [numbers[0]]
        total, sign, product = 0, 1, numbers[0]
        for operator, number in zip(operators, numbers[1:], strict=True):
            expression += [self.modulus + operator, number]
            if operator == 2:
                product *= number
            else:
                total += sign * product
                sign, product = (1 if operator == 0 else -1), number
        total += sign * product
        return expression, [total % self.modulus]


@dataclass(frozen=True)
class ParityCheck(_BinaryQuestion):
    """Parity check (regular): a binary string; answer whether its ``1`` s are even in
    number (``0``) or odd (``1``) (appendix, "Parity Check").

    Inputs ``0``, ``1``, ``?``; one answer token, ``0`` or ``1``.
    Sample (seed 0, length 12): ``000010111100 -> 1``
    """

    name: ClassVar[str] = "parity_check"

    def _answer(self, string: list[int]) -> int:
        return sum(string) % 2


@dataclass(frozen=True)
class CycleNavigation(_ChomskyTask):
    """Cycle navigation (regular): moves on a cycle of ``cycle_length`` positions, each
    ``-`` (one back), ``0`` (stay) or ``+`` (one on), drawn uniformly, from position 0;
    answer the final position (appendix, "Cycle Navigation").

    Inputs ``-``, ``0``, ``+``, ``?`` (the paper's tokens 0, 1, 2 for the moves -1, 0, +1);
    one answer token, a position.
    Sample (seed 0, length 12): ``----0++-0+0+ -> 4``
    """

    name: ClassVar[str] = "cycle_navigation"
    cycle_length: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        require(self.cycle_length >= 2, owner, "cycle_length", self.cycle_length,
                "an integer >= 2")  # fmt: skip

    @property
    def symbols(self) -> list[str]:
        return ["-", "0", "+"]

    @property
    def output_vocabulary(self) -> list[str]:
        return _digits(self.cycle_length)

    def _draw(self, length: int, rng: random.Random) -> tuple[list[int], list[int]]:
        moves = [rng.randrange(3) for _ in range(length)]
        return moves, [sum(m - 1 for m in moves) % self.cycle_length]


# --- Deterministic context-free --------------------------------------------------------------

#: Stack manipulation's input tokens.
POP, PUSH_0, PUSH_1 = 2, 3, 4


@dataclass(frozen=True)
class StackManipulation(_ChomskyTask):
    """Stack manipulation (deterministic context-free): a stack of bits, bottom first, then
    actions ``POP``, ``PUSH0``, ``PUSH1`` drawn uniformly (a pop of the empty stack does
    nothing); answer the final stack top first, then ``$`` (appendix, "Stack
    Manipulation").

    Of a sequence's ``length`` symbols, the stack takes a number uniform in 1 to
    ``length - 1`` (all of a sequence of 1), the actions the rest. Inputs ``0``, ``1``,
    ``POP``, ``PUSH0``, ``PUSH1``, ``?``; answers ``0``, ``1``, ``$``.
    Sample (seed 0, length 8): ``0 0 POP PUSH0 PUSH1 PUSH1 POP PUSH0 -> 0100$``
    """

    name: ClassVar[str] = "stack_manipulation"

    @property
    def symbols(self) -> list[str]:
        return ["0", "1", "POP", "PUSH0", "PUSH1"]

    @property
    def output_vocabulary(self) -> list[str]:
        return ["0", "1", END]

    def _draw(self, length: int, rng: random.Random) -> tuple[list[int], list[int]]:
        depth = 1 if length == 1 else rng.randint(1, length - 1)
        stack = [rng.randrange(2) for _ in range(depth)]
        actions = [rng.choice((POP, PUSH_0, PUSH_1)) for _ in range(length - depth)]
        final = list(stack)
        for action in actions:
            if action == POP:
                if final:
                    final.pop()
            else:
                final.append(action - PUSH_0)
        return stack + actions, [*reversed(final), 2]


@dataclass(frozen=True)
class ReverseString(_StringTask):
    """Reverse string (deterministic context-free): a string of ``vocab_size`` symbols
    drawn uniformly; answer it backwards (appendix, "Reverse String"; binary in the paper).

    Inputs the symbols (digits) and ``?``; answers the symbols, as many as the input.
    Sample (seed 0, length 12): ``000010111100 -> 001111010000``
    """

    name: ClassVar[str] = "reverse_string"
    vocab_size: int = 2

    def _answer(self, string: list[int]) -> list[int]:
        return string[::-1]


def _bracketed(modulus: int, length: int, multiply: bool, rng: random.Random) -> tuple[str, int]:
    """An expression of ``length`` characters over digits below ``modulus``, ``+``, ``-``
    (and ``*`` with ``multiply``) and brackets, and its value modulo ``modulus``, grown as the
    paper's grammar grows it: a digit ``d``, ``-d``, ``(d)`` or ``(-d)`` up to 4 characters,
    else ``(left op right)`` split at random."""
    if length <= 4:
        digit = rng.randrange(modulus)
        negated = length in (2, 4)
        text = f"-{digit}" if negated else str(digit)
        return (f"({text})" if length >= 3 else text), (-digit if negated else digit) % modulus
    left = rng.randint(1, length - 4)
    left_text, left_value = _bracketed(modulus, left, multiply, rng)
    right_text, right_value = _bracketed(modulus, length - 3 - left, multiply, rng)
    operator = rng.randrange(3 if multiply else 2)
    value = (left_value + right_value, left_value - right_value, left_value * right_value)
    return f"({left_text}{'+-*'[operator]}{right_text})", value[operator] % modulus


@dataclass(frozen=True)
class ModularArithmeticBrackets(_ChomskyTask):
    """Modular arithmetic with brackets (deterministic context-free): a bracketed expression
    of ``length`` characters over the numbers below ``modulus`` (one character each), ``+``,
    ``-`` and, with ``mult`` (the paper's setting), ``*``; answer its value modulo
    ``modulus`` (appendix, "Modular Arithmetic").

    The expression grows from the paper's grammar: up to 4 characters ``d``, ``-d``, ``(d)``
    or ``(-d)``, else ``(left op right)`` with the left part's length uniform. Inputs: the
    digits, ``+``, ``-``, ``*``, ``(``, ``)``, ``x`` (the paper's channels; ``x`` is never
    drawn), ``?``; one answer token, a digit.
    Sample (seed 0, length 14): ``((-0)*(1*(3))) -> 0``
    """

    name: ClassVar[str] = "modular_arithmetic_brackets"
    modulus: int = 5
    mult: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        require(2 <= self.modulus <= 10, owner, "modulus", self.modulus,
                "an integer from 2 to 10 (one character a number)")  # fmt: skip

    @property
    def symbols(self) -> list[str]:
        return [*_digits(self.modulus), "+", "-", "*", "(", ")", "x"]

    @property
    def output_vocabulary(self) -> list[str]:
        return _digits(self.modulus)

    def _draw(self, length: int, rng: random.Random) -> tuple[list[int], list[int]]:
        text, value = _bracketed(self.modulus, length, self.mult, rng)
        return [self.symbols.index(c) for c in text], [value]


@dataclass(frozen=True)
class SolveEquation(_ChomskyTask):
    """Solve equation (deterministic context-free): a bracketed expression over the numbers
    below ``modulus``, ``+`` and ``-`` (as :class:`ModularArithmeticBrackets` draws one of
    ``length - 2`` characters) with one number replaced by ``x``, then ``=`` and its value;
    answer the ``x`` (appendix, "Solve Equation").

    The ``x`` takes the place of the first number at or after a position drawn uniformly
    (wrapping round). As in the paper's code, a ``length`` below 3 gives ``length`` zeros,
    answer 0. Inputs: the digits, ``+``, ``-``, ``(``, ``)``, ``x``, ``=``, ``?``; one
    answer token, a digit.
    Sample (seed 0, length 14): ``((-x)-(1+3))=1 -> 0``
    """

    name: ClassVar[str] = "solve_equation"
    modulus: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        require(2 <= self.modulus <= 10, owner, "modulus", self.modulus,
                "an integer from 2 to 10 (one character a number)")  # fmt: skip

    @property
    def symbols(self) -> list[str]:
        return [*_digits(self.modulus), "+", "-", "(", ")", "x", "="]

    @property
    def output_vocabulary(self) -> list[str]:
        return _digits(self.modulus)

    def _draw(self, length: int, rng: random.Random) -> tuple[list[int], list[int]]:
        if length < 3:
            return [0] * length, [0]
        text, value = _bracketed(self.modulus, length - 2, False, rng)
        where = rng.randrange(len(text))
        while not text[where].isdigit():
            where = (where + 1) % len(text)
        equation = f"{text[:where]}x{text[where + 1 :]}={value}"
        return [self.symbols.index(c) for c in equation], [int(text[where])]


# --- Context-sensitive -----------------------------------------------------------------------


@dataclass(frozen=True)
class DuplicateString(_StringTask):
    """Duplicate string (context-sensitive): a string of ``vocab_size`` symbols drawn
    uniformly; answer it twice, ``w -> ww`` (appendix, "Duplicate String"; binary in the
    paper).

    Inputs the symbols (digits) and ``?``; answers the symbols, twice as many as the input.
    Sample (seed 0, length 12): ``000010111100 -> 000010111100000010111100``
    """

    name: ClassVar[str] = "duplicate_string"
    vocab_size: int = 2

    def _answer(self, string: list[int]) -> list[int]:
        return string + string


#: Missing duplicate string's input tokens: the missing symbol, and the padding.
MISSING, PADDING = 2, 3


@dataclass(frozen=True)
class MissingDuplicateString(_ChomskyTask):
    """Missing duplicate string (context-sensitive): a binary string written twice, one
    symbol of the two copies (uniform) replaced by ``_``; answer that symbol (appendix,
    "Missing Duplicate").

    Each copy has ``length // 2`` symbols; an odd ``length`` ends with the padding symbol
    ``.``. As in the paper's code, a ``length`` of 1 gives the input ``1``, answer ``1``.
    Inputs ``0``, ``1``, ``_``, ``.``, ``?``; one answer token, ``0`` or ``1``.
    Sample (seed 0, length 13): ``000010_00010. -> 0``
    """

    name: ClassVar[str] = "missing_duplicate_string"

    @property
    def symbols(self) -> list[str]:
        return ["0", "1", "_", "."]

    @property
    def output_vocabulary(self) -> list[str]:
        return ["0", "1"]

    def _draw(self, length: int, rng: random.Random) -> tuple[list[int], list[int]]:
        if length == 1:
            return [1], [1]
        half = [rng.randrange(2) for _ in range(length // 2)]
        twice = half + half
        where = rng.randrange(len(twice))
        answer = twice[where]
        twice[where] = MISSING
        return twice + [PADDING] * (length % 2), [answer]


@dataclass(frozen=True)
class OddsFirst(_StringTask):
    """Odds first (context-sensitive): a string ``s1 s2 ... sn`` of ``vocab_size`` symbols
    drawn uniformly; answer the symbols at odd positions, then those at even positions,
    ``s1 s3 s5 ... s2 s4 s6 ...`` (appendix, "Odds First"; binary in the paper).

    Counted from 1, as the paper's definition and its code's examples count (the code itself
    puts ``s2 s4 ...`` first; the task is the same up to which half comes first). Inputs the
    symbols (digits) and ``?``; answers the symbols, as many as the input.
    Sample (seed 0, length 12): ``000010111100 -> 001110000110``
    """

    name: ClassVar[str] = "odds_first"
    vocab_size: int = 2

    def _answer(self, string: list[int]) -> list[int]:
        return string[0::2] + string[1::2]


def _two_numbers(length: int, rng: random.Random) -> tuple[int, int, int, int]:
    """Two positive numbers and their widths in bits, the widths summing to ``length - 1``
    (the first uniform in 1 to ``length - 2``), each number uniform below 2 ** width."""
    first = rng.randint(1, length - 2)
    second = length - 1 - first
    return _positive(rng, first), first, _positive(rng, second), second


@dataclass(frozen=True)
class BinaryAddition(_ChomskyTask):
    """Binary addition (context-sensitive): two positive numbers in binary, least
    significant bit first, joined by ``+``; answer their sum the same way, without leading
    zeros, then ``$`` (appendix, "Binary Addition").

    The two numbers take ``length - 1`` bits between them (the first's share uniform in 1 to
    ``length - 2``), each number uniform below 2 ** its share, written at that width (zeros
    at its end possible). As in the paper's code, a ``length`` of 1 or 2 is one number
    below ``2 ** length - 1`` of that many bits, and no ``+``; the answer is that number
    (``0`` for zero). Inputs ``0``, ``1``, ``+``, ``?``; answers ``0``, ``1``, ``$``.
    Sample (seed 0, length 12): ``0100+0011000 -> 0111$``
    """

    name: ClassVar[str] = "binary_addition"

    @property
    def symbols(self) -> list[str]:
        return ["0", "1", "+"]

    @property
    def output_vocabulary(self) -> list[str]:
        return ["0", "1", END]

    def _draw(self, length: int, rng: random.Random) -> tuple[list[int], list[int]]:
        if length <= 2:
            value = rng.randrange(2**length - 1)
            return _bits(value, length), [*_least_first(value), 2]
        first, first_width, second, second_width = _two_numbers(length, rng)
        question = [*_bits(first, first_width), 2, *_bits(second, second_width)]
        return question, [*_least_first(first + second), 2]


@dataclass(frozen=True)
class BinaryMultiplication(_ChomskyTask):
    """Binary multiplication (context-sensitive): two positive numbers in binary, least
    significant bit first, joined by ``*``; answer their product the same way, without
    leading zeros, then ``$`` (appendix, "Binary Multiplication").

    The numbers are drawn as :class:`BinaryAddition` draws them. As in the paper's code, a
    ``length`` of 1 or 2 is one number of that many bits and no ``*``, with the answer
    ``$`` (length 1) or ``0$`` (length 2), whatever the number.
    Inputs ``0``, ``1``, ``*``, ``?``; answers ``0``, ``1``, ``$``.
    Sample (seed 0, length 12): ``0100*0011000 -> 00011$``
    """

    name: ClassVar[str] = "binary_multiplication"

    @property
    def symbols(self) -> list[str]:
        return ["0", "1", "*"]

    @property
    def output_vocabulary(self) -> list[str]:
        return ["0", "1", END]

    def _draw(self, length: int, rng: random.Random) -> tuple[list[int], list[int]]:
        if length <= 2:
            value = rng.randrange(2**length - 1)
            return _bits(value, length), [0] * (length - 1) + [2]
        first, first_width, second, second_width = _two_numbers(length, rng)
        question = [*_bits(first, first_width), 2, *_bits(second, second_width)]
        return question, [*_least_first(first * second), 2]


@dataclass(frozen=True)
class ComputeSqrt(_ChomskyTask):
    """Compute square root (context-sensitive): a positive number of ``length`` bits, most
    significant first (uniform below 2 ** length, zeros in front possible); answer the floor
    of its square root in ``ceil(length / 2)`` bits, most significant first (appendix,
    "Compute Sqrt").

    Inputs ``0``, ``1``, ``?``; answers ``0``, ``1``.
    Sample (seed 0, length 12): ``001111101010 -> 011111``
    """

    name: ClassVar[str] = "compute_sqrt"

    @property
    def symbols(self) -> list[str]:
        return ["0", "1"]

    @property
    def output_vocabulary(self) -> list[str]:
        return ["0", "1"]

    def _draw(self, length: int, rng: random.Random) -> tuple[list[int], list[int]]:
        value = _positive(rng, length)
        root = math.isqrt(value)
        return _bits(value, length)[::-1], _bits(root, math.ceil(length / 2))[::-1]


@dataclass(frozen=True)
class BucketSort(_StringTask):
    """Bucket sort (context-sensitive): a string of ``vocab_size`` symbols drawn uniformly;
    answer its symbols in increasing order (appendix, "Bucket Sort"; five symbols in the
    paper).

    Inputs the symbols (digits) and ``?``; answers the symbols, as many as the input.
    Sample (seed 0, length 12): ``100134133422 -> 001112233344``
    """

    name: ClassVar[str] = "bucket_sort"
    vocab_size: int = 5

    def _answer(self, string: list[int]) -> list[int]:
        return sorted(string)


#: The tasks of each level of the hierarchy, in the paper's order (Table 2).
LEVELS: dict[str, tuple[str, ...]] = {
    "regular": ("even_pairs", "modular_arithmetic", "parity_check", "cycle_navigation"),
    "deterministic context-free": (
        "stack_manipulation",
        "reverse_string",
        "modular_arithmetic_brackets",
        "solve_equation",
    ),
    "context-sensitive": (
        "duplicate_string",
        "missing_duplicate_string",
        "odds_first",
        "binary_addition",
        "binary_multiplication",
        "compute_sqrt",
        "bucket_sort",
    ),
}

#: The tasks in the paper's order (Table 2: regular, deterministic context-free,
#: context-sensitive).
CHOMSKY_TASKS: dict[str, type[_ChomskyTask]] = {
    cls.name: cls
    for cls in (
        EvenPairs,
        ModularArithmetic,
        ParityCheck,
        CycleNavigation,
        StackManipulation,
        ReverseString,
        ModularArithmeticBrackets,
        SolveEquation,
        DuplicateString,
        MissingDuplicateString,
        OddsFirst,
        BinaryAddition,
        BinaryMultiplication,
        ComputeSqrt,
        BucketSort,
    )
}

for _name, _cls in CHOMSKY_TASKS.items():
    register_task(_name, _cls)
