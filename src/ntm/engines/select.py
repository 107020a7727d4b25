"""The engine a model runs a sequence on."""

from __future__ import annotations

from typing import ClassVar

from ntm.config import require


class Engined:
    """A model that runs a sequence by one of its ``engines``, chosen by ``engine``."""

    engines: ClassVar[tuple[str, ...]]
    _engine: str

    @property
    def engine(self) -> str:
        """How ``forward`` runs a sequence: one of :attr:`engines`."""
        return self._engine

    @engine.setter
    def engine(self, engine: str) -> None:
        engines = type(self).engines
        require(engine in engines, type(self).__name__, "engine", engine, f"one of {engines}")
        self._engine = engine
