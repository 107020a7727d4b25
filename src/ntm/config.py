"""Settings as dataclasses: the one source of defaults, strictly checked.

A configuration round-trips through a dict and JSON.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


C = TypeVar("C", bound="JSONConfig")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_value(owner: str, name: str, value: Any, expected: Any) -> Any:
    """Return ``value`` converted to ``expected`` (int, float, str, bool) or raise ValueError."""
    if expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif expected is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - only the four kinds above are used in configs
        return value
    raise ValueError(
        f"{owner}.{name}: expected {expected.__name__}, got {value!r} ({type(value).__name__})"
    )


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build the dataclass ``cls`` from ``data``, strictly: unknown keys and wrong types fail."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    types = _field_types(cls)
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(
            f"{cls.__name__}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"expected some of: {', '.join(names)}"
        )
    values = {k: check_value(cls.__name__, k, v, types[k]) for k, v in data.items()}
    return cls(**values)


#: How a boolean setting may be written on a command line or in ``KEY=VALUE``.
TRUE_WORDS = ("true", "yes", "on", "1")


FALSE_WORDS = ("false", "no", "off", "0")


def parse_bool(text: str, where: str) -> bool:
    """``text`` as a boolean (true/yes/on/1 or false/no/off/0, any case); a ValueError that
    names ``where`` and the value otherwise."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(
        f"{where}: {text!r} is not a boolean; expected one of "
        f"{', '.join(TRUE_WORDS)} or {', '.join(FALSE_WORDS)}"
    )


def require(condition: bool, owner: str, name: str, value: Any, expected: str) -> None:
    """Raise a ValueError naming the setting, its value and what was expected."""
    if not condition:
        raise ValueError(f"{owner}.{name} = {value!r}: expected {expected}")


def require_positive(owner: str, **values: int) -> None:
    """:func:`require` each of ``values`` (setting name: value) to be an integer >= 1."""
    for name, value in values.items():
        require(value >= 1, owner, name, value, "an integer >= 1")


class JSONConfig:
    """Round trips of a configuration dataclass through a dict and JSON, strictly checked."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        return from_dict(cls, data)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        return from_dict(cls, json.loads(text))
