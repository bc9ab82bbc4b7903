"""Namespace: turn source names into legal, unique, stable Python identifiers.

Invariants: each key gets exactly one name; names are unique within the namespace; a name never
is a keyword, a builtin or a reserved word of the namespace (e.g. nn.Module attributes); the same
sequence of requests always gives the same names (generated code is deterministic).
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Hashable, Iterable

_INVALID = re.compile(r"[^0-9a-zA-Z_]+")


def sanitize(raw: str) -> str:
    """`layer1.0.conv1` → `layer1_0_conv1`; leading digits get a prefix."""
    name = _INVALID.sub("_", raw).strip("_") or "v"
    if name[0].isdigit():
        name = f"v_{name}"
    return name


class Namespace:
    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self._taken: set[str] = set(reserved) | set(keyword.kwlist) | set(dir(builtins))
        self._names: dict[Hashable, str] = {}

    def name(self, key: Hashable, candidate: str) -> str:
        """The identifier for `key`, derived from `candidate` on first request."""
        if key in self._names:
            return self._names[key]
        base = sanitize(candidate)
        name, n = base, 1
        while name in self._taken:
            name = f"{base}_{n}"
            n += 1
        self._taken.add(name)
        self._names[key] = name
        return name

    def reserve(self, name: str) -> None:
        self._taken.add(name)
