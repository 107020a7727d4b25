"""The documents describe the project as it is and how to reproduce it, not the story of how
it was built (which session a run came from, what changed since when): history lives in git."""

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: What the documents are made of: the READMEs, docs/ (the prose of the generated documents
#: is in docs/templates/) and the scripts that write docs/.
DOCUMENTS = sorted(
    {
        ROOT / "README.md",
        ROOT / "benchmarks" / "README.md",
        ROOT / "runs-kept" / "README.md",
        *ROOT.glob("docs/**/*.md"),
        *ROOT.glob("scripts/*.py"),
    }
)

#: Narrative phrases, matched case-insensitively; a space matches any run of spaces, line
#: breaks and quotes, so a phrase is found across the lines of a paragraph and across the
#: pieces of a Python string.
NARRATION = (
    r"\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|earlier|later"
    r"|previous|this|that|last|next|same|other) (session|sitting)s?\b",
    r"\b(over|across|in) (two|three|four|five|six|seven|eight|nine|ten|several|many|\d+) "
    r"(sessions|sittings)\b",
    r"\bof that moment\b",
    r"\b(at|until|since) (the|that) time\b(?![-\s]*steps?\b)",
    r"\bshipped until\b",
    r"\b(earlier|previous|first|last) attempts?\b",
    r"\b(earlier|previous) (\w+ )?(run|version)s?\b",
    r"\bbefore the changes?\b",
    r"\bwhat changed\b",
    r"\bno longer\b(?! than)",
    r"\bfor want of time\b",
    r"\bwent from [\d.,]+ to [\d.,]+",
    r"\(was \d",
    r"\bwas [^.;:()]{1,60}, now\b",
    r"\bchangelog\b",
    r"\b(this|that) issue\b",
    r"\bissue #?\d+\b",
)
PATTERNS = [re.compile(p.replace(" ", r"[\s\"]+"), re.IGNORECASE) for p in NARRATION]


def narration(text: str) -> list[tuple[int, str]]:
    """(line, phrase) of every narrative phrase in ``text``, in order."""
    found = {
        (match.start(), " ".join(match.group().replace('"', " ").split()))
        for pattern in PATTERNS
        for match in pattern.finditer(text)
    }
    return [(text.count("\n", 0, start) + 1, phrase) for start, phrase in sorted(found)]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_documents_do_not_narrate(path: Path) -> None:
    hits = narration(path.read_text())
    where = path.relative_to(ROOT)
    assert not hits, "narration, not a statement of fact:\n" + "\n".join(
        f"{where}:{line}: {phrase}" for line, phrase in hits
    )


def test_documents_include_the_results() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in DOCUMENTS}
    assert {
        "docs/results.md",
        "docs/templates/results.md",
        "docs/templates/results/copy.md",
        "scripts/make_results.py",
        "benchmarks/README.md",
    } <= names


@pytest.mark.parametrize(
    "text",
    [
        "## Measured (2-core CPU, 2026-11-28, second session)",
        "The machine ran about 1.6x slower in this\nsession than in the first one",
        "one process, the default of that moment",
        'the model shipped "\n    "until the seventh session',
        "in six learning-rate phases over four sessions",
        "the earlier LSTM run, at 3e-3 only, was at 136.14",
        "### First session (2026-11-28, before the changes above)",
        "an earlier attempt at 1e-3",
        "6.5 bit errors per held-out sequence (was 39.9)",
        "the compiled kernels of a step went from 281 to 201 us",
        "stopped at 91,232 for want of time",
        "Training runs of issue 7",
    ],
)
def test_narration_is_found(text: str) -> None:
    assert narration(text)


@pytest.mark.parametrize(
    "text",
    [
        "measured on 2026-11-28",
        "sequences no longer than 20",
        "its read head finds the earlier steps that had the same context",
        "the earlier stages of a model trained in several",
        "the weightings at the time step t",
        "a crash at any moment leaves the previous checkpoint",
        "the first stage solved at 16,384 sequences",
    ],
)
def test_facts_are_not_narration(text: str) -> None:
    assert narration(text) == []


def _make_results() -> ModuleType:
    """``scripts/make_results.py``, imported."""
    spec = importlib.util.spec_from_file_location(
        "make_results", ROOT / "scripts" / "make_results.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_results"] = module
    spec.loader.exec_module(module)
    return module


def test_the_documents_say_what_the_records_say() -> None:
    """``docs/results.md`` and the tables of the README, the guide, ``docs/sweeps.md`` and
    ``benchmarks/README.md`` are what
    ``make_results.py`` makes of the records and the code (eval outputs, metrics,
    reproduce.json, the sweep's summary, the recipes, the benchmarks' records): a number
    changed by hand, or a record changed without running the script, fails here."""
    make_results = _make_results()
    assert (ROOT / "docs" / "results.md").read_text() == make_results.report(draw=False)
    readme = (ROOT / "README.md").read_text()
    assert make_results.README_TABLE[0] in readme
    assert readme == make_results.readme_with_table(readme)
    guide = (ROOT / "docs" / "guide.md").read_text()
    assert make_results.GUIDE_RECIPES[0] in guide
    assert guide == make_results.guide_with_recipes(guide)
    sweeps = (ROOT / "docs" / "sweeps.md").read_text()
    assert make_results.SWEEP_TABLE[0] in sweeps
    assert sweeps == make_results.sweeps_with_table(sweeps)
    benchmarks = (ROOT / "benchmarks" / "README.md").read_text()
    assert make_results.BENCHMARK_BLOCK[0].split("{}")[0] in benchmarks
    assert benchmarks == make_results.benchmarks_with_tables(benchmarks)


#: A placeholder that names a record's number, in a sentence.
FILLED = "solved at <<last:copy-ntm-ff:sequences:,d>> sequences"


@pytest.mark.parametrize(
    "placeholder",
    [
        "<<eval:no-such-run:training distribution:bit_errors:.3f>>",  # no record
        "<<eval:copy-ntm-ff:length 999:bit_errors:.3f>>",  # no setting
        "<<eval:ntm/no_such_task:training distribution:cost_bits:.1f>>",  # no shipped model
        "<<last:copy-ntm-ff:no_such_column:.1f>>",  # no field
        "<<at:copy-ntm-ff:12345:eval_cost:.1f>>",  # no row at that many sequences
        "<<met:copy-ntm-ff:sequences:,d>>",  # no target_met column: never met
        "<<reproduce:copy:99:sequences:,d>>",  # no seed
        "<<last:copy-ntm-ff:eval_cost:,d>>",  # a cost is no count
        "<<last:copy-ntm-ff:sequences / last:copy-ntm-ff:seconds / 2:.1f>>",  # two operations
    ],
)
def test_a_placeholder_that_names_nothing_raises(placeholder: str) -> None:
    """The templates of docs/results.md name their numbers' records: one that names none fails,
    with the placeholder in the message, instead of being written as it is."""
    fill = _make_results().fill
    assert re.fullmatch(r"solved at [\d,]+ sequences", fill(FILLED))
    with pytest.raises(ValueError, match=re.escape(placeholder)):
        fill(f"solved at {placeholder} sequences")
    with pytest.raises(ValueError, match="unclosed"):
        fill(FILLED.replace(">>", ""))


def test_the_dnc_s_bare_commands_sit_beside_the_ntm_s() -> None:
    rows = [
        {"task": "copy", "solved": True, "sequences": s, "wall_minutes": m}
        for s, m in ((10, 1.0), (30, 3.0), (20, 2.0))
    ]
    dnc = [{**r, "sequences": r["sequences"] // 2} for r in rows[:2]]
    dnc.append({**rows[2], "solved": False})
    lstm = [
        {"task": "copy", "solved": False, "final_eval_cost": c, "ended_by": e}
        for c, e in ((9.0, "budget"), (5.0, "budget"), (7.0, "floor"), (1.0, "unfinished"))
    ]
    lines = _make_results()._medians(rows, dnc, lstm)
    assert lines[-1] == "| copy | 3/3 | 20 | 2.0 | 2/3 | 10 | 2.0 | 0/3 | 7.0 |"
    assert _make_results()._medians(rows, dnc, [])[-1].endswith("| 2/3 | 10 | 2.0 | – | – |")
