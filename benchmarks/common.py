"""What every benchmark's record opens with, and the caption its rendered table opens with."""

from __future__ import annotations

import sys
import time
from typing import Any

import torch


def header(name: str) -> dict[str, Any]:
    """The start of benchmark ``name``'s record: which script, the command that ran it, the
    day and torch's version."""
    return {
        "benchmark": name,
        "command": f"python benchmarks/{name}.py " + " ".join(sys.argv[1:]),
        "measured": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
    }


def caption(record: dict[str, Any]) -> str:
    """The command, day and torch version of ``record``, as a table's caption opens."""
    return f"`{record['command']}` ({record['measured']}, torch {record['torch']})"
