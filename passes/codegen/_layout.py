"""Layout bookkeeping shared by the code printers (framework-neutral, pure functions of permutations).

A generated file holds every IR value in a *physical* layout: a permutation `P` of its logical (IR)
axes, physical axis j being logical axis P[j]. A printer whose target wants the other layout for
convolutions and pools (Keras wants channels-last, torch channels-first) transposes a value once per
layout it needs, remaps axis attributes through `P`, and returns to the logical layout before
order-sensitive ops (reshape, flatten) and at the graph outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

Perm = tuple[int, ...]


def identity(rank: int) -> Perm:
    return tuple(range(rank))


def channels_last(rank: int) -> Perm:
    """The physical order of a channels-first value held channels-last: (0, 2, ..., rank-1, 1)."""
    return (0, *range(2, rank), 1) if rank >= 3 else identity(rank)


def channel_to_front(rank: int, channel_axis: int) -> Perm:
    """The physical order that puts logical `channel_axis` at position 1 (the rest in order); for a
    channels-last value, (0, rank-1, 1, ..., rank-2): NHWC held NCHW."""
    if rank < 3 or channel_axis in (1, None):
        return identity(rank)
    return (0, channel_axis, *(a for a in range(1, rank) if a != channel_axis))


def inverse(perm: Sequence[int]) -> Perm:
    out = [0] * len(perm)
    for j, axis in enumerate(perm):
        out[axis] = j
    return tuple(out)


def same_memory_order(shape: Sequence[int], perm: Perm) -> bool:
    """True when transposing a value of logical `shape` held in `perm` moves no element (every axis
    longer than 1 keeps its relative order), so a reshape may skip the transpose."""
    kept = [axis for axis in perm if shape[axis] != 1]
    return kept == sorted(kept)


def transpose_axes(current: Perm, wanted: Perm) -> Perm:
    """The axes argument of the transpose that takes a value held in `current` to `wanted`."""
    back = inverse(current)
    return tuple(back[axis] for axis in wanted)


def reduced(perm: Perm, axes: Sequence[int]) -> Perm:
    """The layout of a reduction's output (keepdim=False): the remaining axes, renumbered."""
    kept = [a for a in perm if a not in axes]
    return tuple(sorted(kept).index(a) for a in kept)
