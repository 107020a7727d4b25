"""The Chomsky hierarchy's tasks: answers checked against plain Python on the decoded text."""

import itertools
import json
import math
import re
from pathlib import Path

import pytest
import torch

import ntm
from ntm import cli, registry
from ntm.runs import evaluation
from ntm.runs.evaluation import (
    HELD_OUT_SEED,
    LADDER_MEAN,
    answer_shares,
    evaluate_run,
    format_table,
)
from ntm.runs.load import read_run_config
from ntm.tasks import chomsky
from ntm.tasks.chomsky import CHOMSKY_TASKS, example, render
from ntm.tasks.contract import Batch, one_per_seed
from ntm.training.data import draw_batch

#: The paper's code's names, in the order of its Table 2.
NAMES = [
    "even_pairs", "modular_arithmetic", "parity_check", "cycle_navigation",
    "stack_manipulation", "reverse_string", "modular_arithmetic_brackets", "solve_equation",
    "duplicate_string", "missing_duplicate_string", "odds_first", "binary_addition",
    "binary_multiplication", "compute_sqrt", "bucket_sort",
]  # fmt: skip


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def little_endian(bits: str) -> int:
    return int(bits[::-1], 2)


def stack_after(text: str) -> str:
    tokens = text.split()
    depth = next((i for i, t in enumerate(tokens) if t not in "01"), len(tokens))
    stack = tokens[:depth]
    for action in tokens[depth:]:
        if action == "POP":
            if stack:
                stack.pop()
        else:
            stack.append(action[-1])
    return "".join(reversed(stack)) + "$"


def missing_symbol(text: str) -> str:
    if text == "1":
        return "1"
    twice = text.rstrip(".")
    half = len(twice) // 2
    where = twice.index("_")
    return twice[(where + half) % (2 * half)]


def solution(text: str) -> str:
    left, right = text.split("=")
    found = [x for x in range(5) if eval(left.replace("x", str(x))) % 5 == int(right)]
    assert len(found) == 1, text
    return str(found[0])


def binary_sum(text: str) -> str:
    if "+" not in text:  # lengths 1 and 2: the number itself
        value = little_endian(text)
    else:
        first, second = text.split("+")
        value = little_endian(first) + little_endian(second)
    return f"{value:b}"[::-1] + "$"


def binary_product(text: str) -> str:
    if "*" not in text:  # lengths 1 and 2: the paper's fixed answers
        return "0" * (len(text) - 1) + "$"
    first, second = text.split("*")
    return f"{little_endian(first) * little_endian(second):b}"[::-1] + "$"


def square_root(text: str) -> str:
    return f"{math.isqrt(int(text, 2)):b}".zfill(math.ceil(len(text) / 2))


#: Each task's answer, computed from its decoded input text alone.
ANSWERS = {
    "even_pairs": lambda s: str(sum(a != b for a, b in itertools.pairwise(s)) % 2),
    "modular_arithmetic": lambda s: str(eval(s) % 5),
    "parity_check": lambda s: str(s.count("1") % 2),
    "cycle_navigation": lambda s: str((s.count("+") - s.count("-")) % 5),
    "stack_manipulation": stack_after,
    "reverse_string": lambda s: s[::-1],
    "modular_arithmetic_brackets": lambda s: str(eval(s) % 5),
    "solve_equation": lambda s: "0" if set(s) == {"0"} else solution(s),
    "duplicate_string": lambda s: s + s,
    "missing_duplicate_string": missing_symbol,
    "odds_first": lambda s: s[0::2] + s[1::2],
    "binary_addition": binary_sum,
    "binary_multiplication": binary_product,
    "compute_sqrt": square_root,
    "bucket_sort": lambda s: "".join(sorted(s)),
}


def test_the_tasks_are_registered_after_mqar_under_the_paper_s_names() -> None:
    assert list(CHOMSKY_TASKS) == NAMES
    assert list(registry.tasks())[6 : 6 + len(NAMES)] == NAMES
    assert all(registry.tokens(cls) for cls in CHOMSKY_TASKS.values())
    # Four regular tasks, four deterministic context-free, seven context-sensitive: in order.
    assert [len(tasks) for tasks in chomsky.LEVELS.values()] == [4, 4, 7]
    assert [task for tasks in chomsky.LEVELS.values() for task in tasks] == NAMES


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("low", "high"), [(1, 40), (41, 90)])
def test_every_answer_is_what_plain_python_computes(name: str, low: int, high: int) -> None:
    task = ntm.make_task(name, min_length=low, max_length=high)
    batch = task.sample(48, gen(low))
    for index in range(48):
        question, answer = render(task, batch, index).split(" -> ")
        assert answer == ANSWERS[name](question), (question, answer)


@pytest.mark.parametrize("name", NAMES)
def test_a_batch_is_well_formed(name: str) -> None:
    task = ntm.make_task(name, min_length=3, max_length=17)
    batch = task.sample(16, gen())
    steps = batch.inputs.shape[0]
    assert batch.inputs.shape == (steps, 16, task.input_size)
    assert batch.targets.shape == (steps, 16, task.output_size)
    assert batch.mask.shape == (steps, 16) and batch.mask.dtype == torch.bool
    assert len(task.vocabulary) == task.input_size and task.vocabulary[-1] == "?"
    assert len(task.output_vocabulary) == task.output_size
    # One symbol a step until the sequence ends, then nothing; targets only where scored.
    active = batch.inputs.sum(-1)
    assert set(active.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(batch.targets.sum(-1), batch.mask.float())
    for b in range(16):
        ends = int(active[:, b].sum())
        assert torch.all(active[:ends, b] == 1) and torch.all(active[ends:, b] == 0)
        query = batch.inputs[:ends, b, -1].bool()
        reads = int((~query).sum())
        # The answer: the query steps, right after the symbols, every one scored.
        assert torch.equal(query, batch.mask[:ends, b]) and query[reads:].all()
        low = task.min_length - (name == "modular_arithmetic")  # an even length loses one
        assert low <= reads <= task.max_length
    assert batch.mask.any(0).all()
    again = task.sample(16, gen())
    assert all(torch.equal(x, y) for x, y in zip(batch, again, strict=True))
    assert not torch.equal(task.sample(16, gen(1)).inputs[:5], batch.inputs[:5])


@pytest.mark.parametrize("name", NAMES)
def test_cheap_construction_and_one_sequence_per_seed(name: str) -> None:
    task = ntm.make_task(name)
    assert (task.min_length, task.max_length) == (1, 40)
    batch = task.sample_seeded([3, 4])
    assert batch.inputs.shape[1] == 2 and batch.mask.any(0).all()
    # The batch made at once is the contract's one sequence per seed, side by side.
    seeds = [0, 7, 3, 2**40 + 5, 11, 7]
    for settings in ({}, {"min_length": 5, "max_length": 9}):
        changed = task.with_settings(**settings)
        expected = one_per_seed(changed.sample, seeds)
        got = changed.sample_seeded(seeds)
        for field in ("inputs", "targets", "mask"):
            assert torch.equal(getattr(got, field), getattr(expected, field)), field


def test_lengths_cover_the_whole_range() -> None:
    task = ntm.make_task("reverse_string", min_length=2, max_length=5)
    assert set(_lengths(task.sample(200, gen()))) == {2, 3, 4, 5}


def _lengths(batch: ntm.Batch) -> list[int]:
    """The symbols each sequence of a batch reads (not the query steps, not the padding)."""
    return ((batch.inputs.sum(-1) > 0) & (batch.inputs[..., -1] == 0)).sum(0).tolist()


def test_training_draws_one_length_per_batch_as_the_paper_does() -> None:
    task = ntm.make_task("reverse_string", min_length=2, max_length=5)
    assert task.length_per == "batch"
    lengths = []
    for update in range(40):
        batch = draw_batch(task, 7, update, range(16))
        shared = set(_lengths(batch))
        assert len(shared) == 1, f"update {update}: lengths {shared}"
        # No padding: every step reads a symbol or the query.
        assert batch.inputs.shape[0] == 2 * shared.pop() and (batch.inputs.sum(-1) == 1).all()
        lengths.append(_lengths(batch)[0])
        # Two processes drawing halves of the batch draw the same sequences.
        halves = [draw_batch(task, 7, update, range(a, b)) for a, b in ((0, 8), (8, 16))]
        assert torch.equal(torch.cat([h.inputs for h in halves], 1), batch.inputs)
    assert set(lengths) == {2, 3, 4, 5}
    # Each sequence draws its own with length_per "sequence"; sample always does.
    mixed = task.with_settings(length_per="sequence")
    assert len(set(_lengths(draw_batch(mixed, 7, 0, range(64))))) > 1
    assert len(set(_lengths(task.sample(64, gen())))) > 1
    # The variant is the task at one length, fixed by the seed.
    assert task.batch_variant(5) == task.batch_variant(5)
    assert task.batch_variant(5).min_length == task.batch_variant(5).max_length
    assert mixed.batch_variant(5) is mixed


@pytest.mark.parametrize("name", NAMES)
def test_the_docstring_sample_is_what_the_code_draws(name: str) -> None:
    cls = CHOMSKY_TASKS[name]
    shown = re.search(r"Sample \(seed (\d+), length (\d+)\): ``(.*)``", cls.__doc__ or "")
    assert shown is not None, f"{name}: no sample in its docstring"
    seed, length, text = int(shown[1]), int(shown[2]), shown[3]
    assert example(cls(min_length=length, max_length=length), seed) == text


def test_the_ladder_is_the_paper_s_test_lengths_every_27th() -> None:
    rungs = ntm.make_task("duplicate_string").ladder()
    lengths = [settings["min_length"] for _, settings in rungs]
    assert lengths == list(range(41, 501, 27)) and len(lengths) == 18
    assert all(s == {"min_length": n, "max_length": n} for _, s in rungs for n in [s["max_length"]])
    assert rungs[0][0] == "length 41" and rungs[-1][0] == "length 500"
    assert [s["max_length"] for _, s in ntm.make_task("parity_check", max_length=470).ladder()] \
        == [471, 498, 500]  # fmt: skip
    assert ntm.make_task("parity_check", min_length=500, max_length=500).ladder() == []
    assert registry.ladder(ntm.make_task("bucket_sort")) == ntm.make_task("bucket_sort").ladder()


def test_the_ladder_shows_lengths_inside_training_first() -> None:
    def lengths(**settings: int) -> list[int]:
        within = registry.within_training(ntm.make_task("reverse_string", **settings))
        assert all(label == f"length {s['min_length']}" for label, s in within)
        assert all(s["min_length"] == s["max_length"] for _, s in within)
        return [s["min_length"] for _, s in within]

    assert lengths() == [10, 20, 30, 40]
    assert lengths(max_length=15) == [4, 8, 11, 15]
    assert lengths(max_length=470) == [118, 235, 353, 470]  # four, however long training is
    assert lengths(min_length=12, max_length=35) == [12, 18, 26, 35]
    assert lengths(min_length=5, max_length=5) == [5]


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("parity_check", {"min_length": 0}, "ParityCheck.min_length = 0: expected an integer >= 1"),
        ("reverse_string", {"min_length": 9, "max_length": 3}, "ReverseString.max_length = 3"),
        ("modular_arithmetic", {"modulus": 1}, "ModularArithmetic.modulus = 1"),
        ("modular_arithmetic_brackets", {"modulus": 11}, "modulus = 11: expected an integer "
         "from 2 to 10"),
        ("solve_equation", {"modulus": 1}, "SolveEquation.modulus = 1"),
        ("cycle_navigation", {"cycle_length": 1}, "CycleNavigation.cycle_length = 1"),
        ("bucket_sort", {"vocab_size": 1}, "BucketSort.vocab_size = 1"),
        ("duplicate_string", {"vocab_size": 0}, "DuplicateString.vocab_size = 0"),
        ("odds_first", {"length_per": "step"}, "OddsFirst.length_per = 'step': expected "
         "'batch' or 'sequence'"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused_by_name(name: str, settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ntm.make_task(name, **settings)


def test_settings_change_the_vocabularies() -> None:
    task = ntm.make_task("bucket_sort", vocab_size=12)
    assert task.input_size == 13 and task.output_size == 12
    text = example(task.with_settings(min_length=6, max_length=6))
    question, answer = text.split(" -> ")  # symbols of two characters: spaced
    assert sorted(question.split(), key=int) == answer.split()
    arithmetic = ntm.make_task("modular_arithmetic", modulus=7)
    assert arithmetic.vocabulary == [*"0123456", "+", "-", "*", "_", "?"]
    assert arithmetic.output_vocabulary == list("0123456")
    assert chomsky.QUERY == "?" and chomsky.END == "$"


def test_the_table_shows_token_accuracy_and_the_mean_for_tokens_only() -> None:
    bits = [{"setting": "length 20", "task": "copy", "sequences": 10, "cost_bits": 1.0,
             "bit_errors": 0.5, "all_right": 0.5}]  # fmt: skip
    assert "token accuracy" not in format_table(bits)
    tokens = [{**bits[0], "errors_of": "tokens", "token_accuracy": 0.875},
              {**bits[0], "setting": LADDER_MEAN, "errors_of": "tokens",
               "token_accuracy": 0.5, "summary": True}]  # fmt: skip
    shown = format_table(tokens)
    assert "token accuracy" in shown and "87.5%" in shown and LADDER_MEAN in shown


def test_train_and_climb_the_ladder_from_the_command_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = ["train", "--task", "reverse_string", "--model", "transformer", "--model-arg",
               "d_model=16", "--max-sequences", "64", "--batch-size", "16", "--eval-every",
               "32", "--eval-size", "8", "--nproc", "1", "--quiet", "--run-dir",
               str(run_dir)]  # fmt: skip
    assert cli.main(command) == 0  # as ``ntm train`` runs it, in this process
    assert json.loads((run_dir / "config.json").read_text())["train"]["target_bit_errors"] == 0.02
    rows = evaluate_run(run_dir, size=2, climb=True)  # what ``ntm eval RUN --ladder`` shows
    assert [r["setting"] for r in rows] == [
        "training distribution", *(f"length {n}" for n in (10, 20, 30, 40)),
        *(f"length {n}" for n in range(41, 501, 27)), LADDER_MEAN,
    ]  # fmt: skip
    assert [bool(r.get("within")) for r in rows] == [False, *[True] * 4, *[False] * 19]
    table = format_table(rows)  # what ``ntm eval`` prints: the rows inside training marked
    assert "length 40 (inside training)" in table and "length 41 (inside" not in table
    assert all(0 <= r["token_accuracy"] <= 1 for r in rows)
    # The best constant answer ("one symbol" in the table), counted here on the rows' own
    # held-out sequences: each row's most frequent answer; over the test lengths, the one
    # symbol whose shares average highest.
    task = read_run_config(run_dir).task
    counted = {}
    for label, changes in registry.ladder(task):
        batch = task.with_settings(**changes).sample(
            2, torch.Generator().manual_seed(HELD_OUT_SEED)
        )
        answers = [int(t.argmax()) for t, scored in zip(batch.targets.reshape(-1, 2),
                   batch.mask.reshape(-1), strict=True) if scored]  # fmt: skip
        counted[label] = [answers.count(symbol) / len(answers) for symbol in (0, 1)]
    by_setting = {r["setting"]: r for r in rows}
    for label, shares in counted.items():
        assert by_setting[label]["one_symbol"] == pytest.approx(max(shares))
    means = [sum(shares[symbol] for shares in counted.values()) / 18 for symbol in (0, 1)]
    assert rows[-1]["one_symbol"] == pytest.approx(max(means)) and "one symbol" in table
    # A held-out set draws a length per sequence: its description leaves length_per out.
    assert rows[0]["task"] == "min_length=1, max_length=40, vocab_size=2"
    # The score is the mean over the test lengths only, as the paper's.
    mean = sum(r["token_accuracy"] for r in rows[5:-1]) / 18
    assert rows[-1]["token_accuracy"] == pytest.approx(mean) and rows[-1]["summary"]
    # A run saved before length_per existed resumes as it trained: a length per sequence.
    config = json.loads((run_dir / "config.json").read_text())
    assert config["task"]["length_per"] == "batch"
    del config["task"]["length_per"]
    (run_dir / "config.json").write_text(json.dumps(config))
    assert read_run_config(run_dir).task.length_per == "sequence"
    assert cli.main(["train", "--resume", str(run_dir), "--max-sequences", "96", "--quiet"]) == 0
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["task"]["length_per"] == "sequence" and saved["train"]["max_sequences"] == 96


def test_the_best_constant_answer_is_one_symbol_over_every_length() -> None:
    targets = torch.nn.functional.one_hot(torch.tensor([[0, 1], [0, 2], [1, 1]]), 3).float()
    mask = torch.tensor([[True, True], [True, False], [False, True]])  # 4 scored: 0, 1, 0, 1
    batch = Batch(torch.zeros(3, 2, 1), targets, mask)
    assert answer_shares(batch) == [0.5, 0.5, 0.0]
    # Two rungs, each answered best by another symbol: one symbol for both gets half right.
    row = {"sequences": 1, "cost_bits": 0.0, "bit_errors": 0.0, "all_right": 1.0,
           "errors_of": "tokens", "token_accuracy": 1.0}  # fmt: skip
    rows = [{**row, "setting": f"length {n}"} for n in (41, 68)]
    summary = evaluation._mean_over_ladder(rows, [[0.9, 0.1], [0.1, 0.9]])
    assert summary["one_symbol"] == pytest.approx(0.5)
