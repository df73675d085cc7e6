"""One generic registry: methods register themselves by name; lookups explain what went wrong.

An attack, a metric or an unlearning method lives in its own module and registers itself
with a decorator; a registry can also hold lazy ``"module:attr"`` entries, so that listing
or resolving a name never imports heavy optional backends until the entry is used.

Example:
    >>> fruits = Registry("fruit")
    >>> @fruits.register("apple")
    ... def apple():
    ...     return "an apple"
    >>> fruits.get("apple")()
    'an apple'
    >>> fruits.get("aple")
    Traceback (most recent call last):
    ...
    KeyError: "unknown fruit 'aple'; did you mean 'apple'? (known: apple)"
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Any, Callable, Iterator


class Registry:
    """Names → objects (usually classes), with lazy entries and did-you-mean errors.

    Args:
        kind: What the registry holds, used in error messages ("attack", "metric").
        package: A package whose modules register entries when imported. It is imported,
            module by module, the first time a name is looked up or the registry listed,
            so adding a method means adding one file, never editing a central list.
    """

    def __init__(self, kind: str, *, package: str | None = None):
        self.kind = kind
        self.package = package
        self._entries: dict[str, Any] = {}
        self._discovered = package is None

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator that registers its target under ``name``."""

        def add(obj):
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def add_lazy(self, name: str, target: str) -> None:
        """Register ``"module:attr"``, imported on first use."""
        if ":" not in target:
            raise ValueError(f"lazy {self.kind} entry must look like 'module:attr', got {target!r}")
        self._entries[name] = target

    def _discover(self) -> None:
        if self._discovered:
            return
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{self.package}.{info.name}")  # a broken module raises here, every time
        self._discovered = True

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str):
        """The entry registered as ``name`` (importing it if lazy)."""
        self._discover()
        if name not in self._entries:
            known = sorted(self._entries)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(known)})")
        entry = self._entries[name]
        if isinstance(entry, str):
            module, attr = entry.split(":", 1)
            entry = self._entries[name] = getattr(importlib.import_module(module), attr)
        return entry
