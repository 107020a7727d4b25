"""The engine a model runs a sequence on: one selector and one fallback chain for every model.

An engine is how a model's ``forward`` runs a whole sequence:

``eager``
    the cell step by step under autograd (every model with engines has it);
``fused``
    the sequence as one autograd node with a hand-written backward (:mod:`ntm.engines.fused`);
``compiled``
    ``fused`` with its steps compiled by ``torch.compile``;
``native``
    the recurrence in C, forward and backward in one call each (:mod:`ntm.engines.native`).

A model declares the engines it has (``engines``, a class attribute); its ``engine`` is the
one asked for, ``auto`` by default. :func:`select_engine` decides, for a device and a dtype,
the engine that runs and why it is not the one asked for. It is the only place that decides:
the models' ``forward``, ``ntm train``, evaluation and loading all ask it.

The chain, for every model: ``native`` runs float32 on the CPU where the C library builds,
else falls back to ``fused``; ``compiled`` needs a working ``torch.compile`` and gradients
(evaluation, under ``torch.no_grad``, would compile a graph per batch size for nothing), else
``fused``; ``fused`` falls back to ``eager`` only where the model has no ``fused`` (the DNC).
An engine the model lacks falls down the same chain. ``auto`` is the first of ``native``,
``fused``, ``eager`` that runs. While ``torch.compile`` traces a model, the model runs
``eager``, the only engine made of operations it can trace.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch

from ntm.config import require
from ntm.engines.fused import compiled_available
from ntm.engines.native import native_available

#: The value of ``engine`` that lets the selector choose the fastest engine that runs.
AUTO = "auto"
#: Every engine, in the order of the fallback chain's targets (``eager`` last).
ENGINES = ("native", "compiled", "fused", "eager")
#: Where an engine that cannot run, or that the model lacks, falls back to.
FALLBACK = {"native": "fused", "compiled": "fused", "fused": "eager"}
#: What ``auto`` tries, fastest first.
PREFERENCE = ("native", "fused", "eager")


class Choice(NamedTuple):
    """The engine that runs (``""`` for a model without engines), and why it is not the one
    asked for (None when it is, or when ``auto`` found its first choice)."""

    engine: str
    reason: str | None


def _problem(engine: str, device_type: str, dtype: torch.dtype, grad: bool) -> str | None:
    """Why ``engine`` cannot run on ``device_type`` in ``dtype`` (None: it can)."""
    if engine == "native":
        if device_type != "cpu" or dtype != torch.float32:
            return f"float32 on the CPU only, not {dtype} on {device_type}"
        return native_available()
    if engine == "compiled":
        if not grad:
            return "no gradients: evaluation runs uncompiled"
        return compiled_available()
    return None


def select_engine(
    engines: tuple[str, ...],
    requested: str,
    device: torch.device,
    dtype: torch.dtype,
    grad: bool = True,
) -> Choice:
    """The engine of a model with ``engines`` that runs when ``requested`` (one of them, or
    ``auto``) is asked for on ``device`` in ``dtype``, with gradients on or off (``grad``),
    and why it is not the one asked for. See the module's docstring for the chain."""
    if not engines:
        return Choice("", None)
    reasons: list[str] = []
    if requested == AUTO:
        for engine in (*[e for e in PREFERENCE if e in engines], *engines):
            problem = _problem(engine, device.type, dtype, grad)
            if problem is None:
                return Choice(engine, "; ".join(reasons) or None)
            reasons.append(f"{engine}: {problem}")
        return Choice(engines[0], "; ".join(reasons))
    engine = requested
    while True:
        if engine not in engines:
            reasons.append(f"{engine}: the model has {', '.join(engines)}")
        else:
            problem = _problem(engine, device.type, dtype, grad)
            if problem is None:
                return Choice(engine, "; ".join(reasons) or None)
            reasons.append(f"{engine}: {problem}")
        if engine not in FALLBACK:
            return Choice(engines[0], "; ".join(reasons))
        engine = FALLBACK[engine]


def compiling() -> bool:
    """Whether ``torch.compile`` is tracing the code that asks."""
    return bool(torch.compiler.is_compiling())


class Engined:
    """A model that runs a sequence on one of its ``engines``, as :func:`select_engine`
    decides from its ``engine`` (``auto``, or any engine of the chain)."""

    engines: ClassVar[tuple[str, ...]]
    _engine: str

    @property
    def engine(self) -> str:
        """The engine asked for: ``auto`` or one of :attr:`engines`. Which one runs is
        :meth:`engine_for`'s answer."""
        return self._engine

    @engine.setter
    def engine(self, engine: str) -> None:
        # Any engine of the chain may be asked for: one the model lacks falls down the chain.
        allowed = (AUTO, *ENGINES)
        require(engine in allowed, type(self).__name__, "engine", engine, f"one of {allowed}")
        self._engine = engine

    def engine_for(self, device: torch.device, dtype: torch.dtype) -> Choice:
        """The engine a sequence on ``device`` in ``dtype`` runs on now, and why."""
        if compiling():
            return Choice("eager", "traced by torch.compile")
        return select_engine(
            type(self).engines, self._engine, device, dtype, torch.is_grad_enabled()
        )
