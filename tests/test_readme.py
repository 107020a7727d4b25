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


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


def ntm_commands() -> list[list[str]]:
    commands = []
    for block in blocks("bash"):
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


def inline_calls() -> list[str]:
    """Inline code spans of the README (outside fenced blocks) that call into ``ntm``."""
    prose = re.sub(r"```.*?```", "", README.read_text(), flags=re.DOTALL)
    spans = re.findall(r"`([^`\n]+)`", prose)
    return [s for s in spans if re.fullmatch(r"ntm(\.\w+)+\(.*\)", s)]


def test_readme_inline_python_works_after_import_ntm() -> None:
    """Every ``ntm.x.y(...)`` the README's prose names exists after a bare ``import ntm``
    (in a fresh interpreter), and runs when its arguments are literals."""
    calls = inline_calls()
    assert 'ntm.pretrained.load("copy")' in calls
    lines = ["import ntm"]
    for call in calls:
        function, _, arguments = call.partition("(")
        lines.append(f"assert callable({function}), {call!r}")
        try:
            ast.literal_eval(f"({arguments[:-1]},)" if arguments[:-1] else "()")
        except (ValueError, SyntaxError):
            continue  # names a variable of the reader's: checked to exist, not run
        lines.append(call)
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
