"""Pareto fronts: the architectures no other one beats on both objectives."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def pareto_front(items: Sequence[T], cost: Callable[[T], float], score: Callable[[T], float]) -> list[T]:
    """The non-dominated items (lower `cost` and higher `score` are better), cheapest first.

    An item is dominated when another is at least as good on both objectives and strictly better on
    one. Of items tied on both, the first one given is kept.
    """
    ordered = sorted(range(len(items)), key=lambda i: (cost(items[i]), -score(items[i]), i))
    front: list[T] = []
    best = float("-inf")
    for i in ordered:
        if score(items[i]) > best:
            front.append(items[i])
            best = score(items[i])
    return front
