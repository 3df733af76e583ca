"""The base models a server offers, loaded once on first use."""

from __future__ import annotations

import threading

from .config import ModelSource
from .errors import BadRequest
from .model import BUILTIN_MODEL, BaseModel, load_base_model


class ModelCatalog:
    """Base models by the name clients use; each is loaded on first use and then shared."""

    def __init__(self, sources: tuple[ModelSource, ...]) -> None:
        chosen = sources or (ModelSource(name=BUILTIN_MODEL, source=BUILTIN_MODEL),)
        self._sources = {source.name: source for source in chosen}
        self._loaded: dict[str, BaseModel] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self._sources)

    def check(self, name: str) -> None:
        if name not in self._sources:
            raise BadRequest(
                f"unknown base_model {name!r}: this server serves {', '.join(self.names)} "
                "(start it with --model NAME_OR_DIR to serve others)"
            )

    def get(self, name: str) -> BaseModel:
        """The loaded model; blocks while it loads, so call it from the compute thread."""
        self.check(name)
        with self._lock:
            if name not in self._loaded:
                source = self._sources[name]
                self._loaded[name] = load_base_model(source.source, name=source.name)
            return self._loaded[name]
