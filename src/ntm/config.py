"""Settings as dataclasses: the one source of defaults, strictly checked.

A configuration round-trips through a dict and JSON.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import typing
from collections.abc import Callable
from dataclasses import fields
from typing import Any, NamedTuple, TypeVar

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


class Check(NamedTuple):
    """A condition on one setting's value, and what it expects, said in words."""

    holds: Callable[[Any], bool]
    expected: str


#: The checks most settings need.
AT_LEAST_ONE = Check(lambda v: v >= 1, "an integer >= 1")
AT_LEAST_ZERO = Check(lambda v: v >= 0, "an integer >= 0")
OFF_OR_POSITIVE = Check(lambda v: math.isfinite(v) and v >= 0, "a number >= 0 (0: off)")
SMALL_POSITIVE = Check(lambda v: 0 < v < 1, "a number in (0, 1)")


def one_of(*choices: str) -> Check:
    """The check that a value is one of ``choices``."""
    return Check(lambda v: v in choices, f"one of {', '.join(choices)}")


def setting(default: Any, check: Check | None = None) -> Any:
    """A field of a settings dataclass: its default and the check its value must pass (run
    by :class:`JSONConfig` after construction). The field's comment says why the default."""
    return dataclasses.field(default=default, metadata={"check": check} if check else {})


class JSONConfig:
    """Round trips of a configuration dataclass through a dict and JSON, strictly checked.

    Every field declared with :func:`setting` and a check is checked when the dataclass is
    built; a subclass adds checks that relate two settings in :meth:`check`. Its fields are
    the keyword arguments of the modules built from it (:meth:`of`), so each setting is
    declared once, with its default, its check and the reason for its default.
    """

    def __post_init__(self) -> None:
        name, values = type(self).__name__, self.to_dict()
        for f in fields(self):  # type: ignore[arg-type]
            check: Check | None = f.metadata.get("check")
            if check is not None:
                require(check.holds(values[f.name]), name, f.name, values[f.name], check.expected)
        self.check()

    def check(self) -> None:
        """Checks that relate two settings or more (none by default)."""

    @classmethod
    def of(
        cls: type[C], owner: str, input_size: int, output_size: int, settings: dict[str, Any]
    ) -> C:
        """The settings given to ``owner``'s constructor as keyword arguments; a name that
        is not a field is refused, naming the fields."""
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(settings) - set(names))
        if unknown:
            raise TypeError(
                f"{owner}: unknown setting(s) {', '.join(map(repr, unknown))}; expected some "
                f"of: {', '.join(n for n in names if n not in ('input_size', 'output_size'))}"
            )
        return cls(input_size=input_size, output_size=output_size, **settings)  # type: ignore[call-arg]

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


def settings_signature(config: type[JSONConfig], *after: inspect.Parameter) -> inspect.Signature:
    """The signature of a module built from ``config``: ``(input_size, output_size, *,
    SETTING=DEFAULT, ..., *after)``, what ``help()`` and :func:`inspect.signature` show of
    a constructor that takes the settings as ``**settings``."""
    hints = typing.get_type_hints(config)
    keyword = inspect.Parameter.KEYWORD_ONLY
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature(
        [
            inspect.Parameter("input_size", positional, annotation=int),
            inspect.Parameter("output_size", positional, annotation=int),
            *(
                inspect.Parameter(f.name, keyword, default=f.default, annotation=hints[f.name])
                for f in fields(config)  # type: ignore[arg-type]
                if f.name not in ("input_size", "output_size")
            ),
            *after,
        ]
    )


#: The keyword arguments of a module that say where its parameters live, not what it is.
PLACEMENT = (
    inspect.Parameter("device", inspect.Parameter.KEYWORD_ONLY, default=None),
    inspect.Parameter("dtype", inspect.Parameter.KEYWORD_ONLY, default=None),
)
#: Those of a model over whole sequences: its layout of time, its engine (``auto`` where it
#: has engines), and :data:`PLACEMENT`.
WRAPPER_ARGUMENTS = (
    inspect.Parameter("batch_first", inspect.Parameter.KEYWORD_ONLY, default=False),
    inspect.Parameter("engine", inspect.Parameter.KEYWORD_ONLY, default="auto"),
    *PLACEMENT,
)
