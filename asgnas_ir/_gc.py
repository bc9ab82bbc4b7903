"""Pausing Python's cyclic garbage collector around the API's graph work.

NOTE: [Why the GC is paused] Lowering and analysing a network allocates 10^4–10^5 small objects
(fx nodes, pydantic models, slices, index lists), enough to set off several full collections.
Each full collection walks every tracked object in the process, and with torch imported that is
millions of them: about 100 ms per collection, two thirds of resnet50's compile time. Nothing
built here forms reference cycles that must be reclaimed before the call returns, so the collector
is paused for the call and the next collection after it reclaims whatever is garbage.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC inside the block (nested uses are fine: the outermost re-enables it)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def with_gc_paused(fn: F) -> F:
    """Decorator form of `gc_paused`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with gc_paused():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
