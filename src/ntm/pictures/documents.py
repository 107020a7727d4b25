"""Documents from Markdown templates: placeholders filled from records, marked blocks replaced.

A template is Markdown whose numbers are placeholders ``<<REF:FORMAT>>``: ``REF`` names a
value that the generator looks up (in a record, or among the values it computed), ``FORMAT``
is a format spec (``.3f``, ``,d``, ``.1%``; ``s`` for text). ``<<REF OP REF:FORMAT>>`` writes
the result of one operation (OP: ``+``, ``-``, ``*`` or ``/`` between spaces; a REF may be a
number). A generated block of a hand-written document sits between two marker lines
(``<!-- ... -->``) and is replaced whole. The generators are ``scripts/make_results.py`` and
``benchmarks/compare.py``; the templates are in ``docs/templates/``.
"""

from __future__ import annotations

import contextlib
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: A placeholder: what it names and its format, ``<<REF:FORMAT>>``.
PLACEHOLDER = re.compile(r"<<(.*?)>>")
OPERATIONS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
#: A lookup: the value a REF names; it raises (any exception) when the REF names none.
Lookup = Callable[[str], Any]


def named(values: Mapping[str, Any]) -> Lookup:
    """A lookup of the REFs that are keys of ``values``."""

    def lookup(ref: str) -> Any:
        if ref not in values:
            raise LookupError(f"no value named {ref!r} (known: {', '.join(sorted(values))})")
        return values[ref]

    return lookup


def fill(text: str, lookup: Lookup | Mapping[str, Any]) -> str:
    """``text`` with each placeholder ``<<REF:FORMAT>>`` replaced by the value ``lookup``
    gives for ``REF`` (a mapping: its key), written with ``FORMAT``; ``<<REF OP REF:FORMAT>>``
    by the result of the operation. A ``d`` format takes whole numbers only and writes them
    as ints. A placeholder that names no value, or whose value the format cannot write,
    raises ValueError naming it; so does a ``<<`` left unclosed."""
    find = named(lookup) if isinstance(lookup, Mapping) else lookup
    literal = PLACEHOLDER.sub("", text)
    if "<<" in literal:
        at = literal.index("<<")
        raise ValueError(f"placeholder left unclosed: {literal[at : at + 60]!r}")

    def value(ref: str) -> Any:
        with contextlib.suppress(ValueError):
            return float(ref)  # a number
        return find(ref)

    def render(match: re.Match[str]) -> str:
        expression, _, spec = match.group(1).rpartition(":")
        try:
            first, *operation = re.split(r" ([-+*/]) ", expression)
            result = value(first)
            if operation:
                symbol, second = operation  # one operation at most
                result = OPERATIONS[symbol](result, value(second))
            if spec.endswith("d"):  # a count: a whole number, written as an int
                if result != int(result):
                    raise ValueError(f"{result} is not a whole number")
                result = int(result)
            return format(result, spec)
        except Exception as error:
            raise ValueError(f"placeholder {match.group()}: {error!r}") from error

    return PLACEHOLDER.sub(render, text)


def between(text: str, markers: tuple[str, str], lines: Sequence[str]) -> str:
    """``text`` with ``lines`` in place of what stands between the lines ``markers`` (begin,
    end); ValueError names a marker that ``text`` lacks."""
    begin, end = markers
    head, found, rest = text.partition(begin + "\n")
    if not found:
        raise ValueError(f"no line {begin!r} in the document")
    _, found, tail = rest.partition(end)
    if not found:
        raise ValueError(f"no {end!r} after {begin!r} in the document")
    return head + begin + "\n" + "\n".join(lines) + "\n" + end + tail


def each_between(text: str, begin: str, end: str, lines: Callable[[str], Sequence[str]]) -> str:
    """``text`` with each block between a line ``begin`` and a line ``end`` replaced by
    ``lines(ARGUMENT)``, where ``begin`` holds ``{}`` in place of a block's argument (one word
    without spaces): ``"<!-- record: {} -->"``."""
    before, after = (re.escape(part) for part in begin.split("{}"))
    block = re.compile(before + r"(\S+)" + after + r"\n.*?" + re.escape(end), re.DOTALL)

    def render(match: re.Match[str]) -> str:
        argument = match.group(1)
        return begin.replace("{}", argument) + "\n" + "\n".join(lines(argument)) + "\n" + end

    return block.sub(render, text)
