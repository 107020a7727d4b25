"""The README's examples work as written."""

import re
import shlex
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
