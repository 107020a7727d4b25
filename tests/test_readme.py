"""The README's examples work as written."""

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ntm.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"
#: The guide the README points to for the details of the command line.
GUIDE = README.parent / "docs" / "guide.md"


def blocks(language: str, *, guide: bool = False) -> list[str]:
    """The README's fenced blocks of ``language`` (and the guide's, with ``guide``)."""
    texts = [README.read_text(), *([GUIDE.read_text()] if guide else [])]
    return [b for t in texts for b in re.findall(rf"```{language}\n(.*?)```", t, flags=re.DOTALL)]


def ntm_commands() -> list[list[str]]:
    commands = []
    for block in blocks("bash", guide=True):
        for line in block.replace("\\\n", " ").splitlines():  # continued lines joined
            for part in line.split("&&"):
                words = shlex.split(part.split("#")[0])
                if words and words[0] == "ntm":
                    commands.append(words[1:])
                elif words and words[0] == "torchrun":  # torchrun ... -m ntm ARGS
                    start = words.index("-m")
                    assert words[start + 1] == "ntm", line
                    commands.append(words[start + 2 :])
    return commands


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_readme_python_example_runs(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(blocks("python")[index], f"README.md block {index}", "exec"), {})
    assert capsys.readouterr().out  # every example prints what it shows


def inline_python() -> list[str]:
    """Inline code spans of the README (outside fenced blocks) that name something of
    ``ntm``: ``ntm.x``, ``ntm.x.y(...)``."""
    prose = re.sub(r"```.*?```", "", README.read_text(), flags=re.DOTALL)
    spans = re.findall(r"`([^`\n]+)`", prose)
    return [s for s in spans if re.fullmatch(r"ntm(\.\w+)+(\(.*\))?", s)]


def _literal_call(span: str) -> bool:
    """Whether ``span`` is a call whose arguments are all literals (so it can be run)."""
    call = ast.parse(span, mode="eval").body
    if not isinstance(call, ast.Call):
        return False
    try:
        for value in [*call.args, *(k.value for k in call.keywords)]:
            ast.literal_eval(value)
    except ValueError:
        return False
    return True


def test_readme_inline_python_works_after_import_ntm() -> None:
    """Everything ``ntm.…`` the README's prose names exists after a bare ``import ntm`` (in a
    fresh interpreter), and every call with literal arguments runs."""
    spans = inline_python()
    assert 'ntm.pretrained.load("copy")' in spans
    assert "ntm.NTM(9, 8, memory_size=64, num_read_heads=2)" in spans
    lines = ["import ntm"]
    for span in spans:
        name = span.partition("(")[0]
        lines.append(f"assert {name} is not None, {span!r}")
        if _literal_call(span):
            lines.append(span)
    result = subprocess.run(
        [sys.executable, "-c", "\n".join(lines)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_readme_commands_parse() -> None:
    commands = ntm_commands()
    assert ["train", "--task", "copy"] in commands
    assert sum(words[:1] == ["sweep"] for words in commands) >= 1
    parser = build_parser()
    for words in commands:
        parser.parse_args(words)  # a flag the README names that does not exist exits here


def test_readme_test_command_matches_ci() -> None:
    ci = (README.parent / ".ci" / "run").read_text()
    test_command = next(line for b in blocks("bash") for line in b.splitlines() if "pytest" in line)
    assert test_command.strip() in ci
