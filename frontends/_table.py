"""ConverterTable: one entry per source op, registered with a decorator.

A duplicate key is an import-time error (two converters for one op would make the result depend
on import order). Lookups that miss return None so the driver can collect every unsupported op
before raising one error that lists them all.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any

Converter = Callable[..., Any]


class ConverterTable:
    def __init__(self, name: str) -> None:
        self.name = name
        self._entries: dict[Hashable, Converter] = {}

    def register(self, *keys: Hashable) -> Callable[[Converter], Converter]:
        """Decorator registering the converter under every key in `keys`."""

        def add(fn: Converter) -> Converter:
            for key in keys:
                if key in self._entries:
                    raise RuntimeError(f"{self.name}: converter for {key!r} registered twice")
                self._entries[key] = fn
            return fn

        return add

    def add(self, keys: Iterable[Hashable], fn: Converter) -> None:
        self.register(*keys)(fn)

    def get(self, key: Hashable) -> Converter | None:
        return self._entries.get(key)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
