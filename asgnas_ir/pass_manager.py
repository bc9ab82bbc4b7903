"""Passes, their registry, and the manager that runs them.

A pass is a small class with a kebab-case `name` (also its CLI name), a one-line `description`,
the analyses it `requires`, and `run(graph, **options)`:
- an analysis returns a pydantic result and never mutates the graph; results are cached on the
  graph keyed by (pass name, options) and dropped when the graph's version changes;
- a transform is functional: it returns `PassResult(graph=new_graph, modified=...)` and leaves its
  input untouched, so a network and its sub-network coexist;
- a codegen pass writes files and returns the list it wrote.

Errors raised inside a pass come back as `PassError` naming the pass and the passes run before it.
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from asgnas_ir.errors import AsgnasError, PassError
from asgnas_ir.ir.graph import Graph

PassKind = Literal["analysis", "transform", "codegen"]


class PassResult(BaseModel):
    """What a transform returns: the new graph and whether anything changed."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    graph: Graph
    modified: bool


class Pass:
    """Base of every pass; subclasses set the class attributes and implement `run`."""

    name: ClassVar[str]
    description: ClassVar[str]
    kind: ClassVar[PassKind] = "analysis"
    requires: ClassVar[tuple[str, ...]] = ()

    def run(self, graph: Graph, **options: Any) -> Any:
        raise NotImplementedError


REGISTRY: dict[str, type[Pass]] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator adding a pass to the registry; a duplicate name is an import-time error."""
    if cls.name in REGISTRY:
        raise RuntimeError(f"pass '{cls.name}' registered twice ({REGISTRY[cls.name].__module__}, {cls.__module__})")
    REGISTRY[cls.name] = cls
    return cls


def _load_passes() -> None:
    import asgnas_ir.passes  # noqa: F401  (importing registers every pass)


def list_passes() -> list[type[Pass]]:
    """Every registered pass, sorted by name."""
    _load_passes()
    return [REGISTRY[name] for name in sorted(REGISTRY)]


def get_pass(name: str) -> type[Pass]:
    _load_passes()
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise PassError(f"no pass named '{name}'; known passes: {known}") from None


def _options_key(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True, default=repr)


class PassManager:
    """Runs passes with their requirements first, caches analyses and keeps timings."""

    def __init__(self) -> None:
        self.history: list[str] = []
        self.timings: dict[str, float] = {}

    def analysis(self, name: str, graph: Graph, **options: Any) -> Any:
        """The (cached) result of analysis `name` on `graph`."""
        cls = get_pass(name)
        if cls.kind != "analysis":
            raise PassError(f"'{name}' is a {cls.kind} pass, not an analysis")
        key = (name, _options_key(options))
        if key not in graph._cache:
            graph._cache[key] = self._execute(cls, graph, options)
        return graph._cache[key]

    def run(self, name: str, graph: Graph, **options: Any) -> Any:
        """Run any pass (analyses come from the cache when possible)."""
        cls = get_pass(name)
        if cls.kind == "analysis":
            return self.analysis(name, graph, **options)
        return self._execute(cls, graph, options)

    def _execute(self, cls: type[Pass], graph: Graph, options: dict[str, Any]) -> Any:
        for requirement in cls.requires:
            self.analysis(requirement, graph)
        start = time.perf_counter()
        try:
            result = cls().run(graph, **options)
        except AsgnasError:
            raise  # user-facing errors already name the node and the remedy
        except TypeError as exc:
            if "unexpected keyword argument" in str(exc):
                raise PassError(f"pass '{cls.name}' does not take that option: {exc}") from None
            raise self._wrap(cls, exc) from exc
        except Exception as exc:  # noqa: BLE001  (re-raised with the pass context)
            raise self._wrap(cls, exc) from exc
        finally:
            self.timings[cls.name] = self.timings.get(cls.name, 0.0) + time.perf_counter() - start
        self.history.append(cls.name)
        return result

    def _wrap(self, cls: type[Pass], exc: Exception) -> PassError:
        return PassError(
            f"while running '{cls.name}' after {self.history}: {type(exc).__name__}: {exc}. "
            "This is a bug in asgnas-ir; please report it with the IR JSON."
        )


_DEFAULT = PassManager()


def analysis(name: str, graph: Graph, **options: Any) -> Any:
    """Module-level shortcut passes use to read another analysis' result."""
    return _DEFAULT.analysis(name, graph, **options)


def run_pass(name: str, graph: Graph, **options: Any) -> Any:
    """Run pass `name` on `graph` with `options` (the public `ai.run_pass`)."""
    return PassManager().run(name, graph, **options)
