"""A layered (Sugiyama-style) layout of a DAG, top to bottom, without graphviz.

1. Layers: a node's layer is the longest path to it from a source (`topological_generations`),
   except that a source which is not a graph input (a constant) sits just above its first consumer
   instead of at the top of the picture.
2. Long edges are cut into unit steps through dummy points, so they bend round boxes in between.
3. Order within layers: alternating down/up barycentre sweeps, keeping the order with the fewest
   crossings seen (ties go to the earlier one, so the result is deterministic).
4. x: each node wants the mean x of its neighbours in the previous layer of the sweep; the nearest
   placement that keeps the layer's order and minimum gaps is an isotonic regression (pool adjacent
   violators), which keeps chains straight and centres a join under its branches.

Invariants: boxes never overlap within a layer; every route starts at the bottom of its tail box
and ends at the top of its head box; the same input gives the same floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import networkx as nx

H_GAP = 22.0
V_GAP = 38.0
MARGIN = 16.0
_DUMMY_WIDTH = 6.0
_DUMMY_WEIGHT = 0.3
_SWEEPS = 6
_X_ROUNDS = 4


@dataclass(frozen=True)
class Box:
    """A placed box: centre `x`, top `y`, width `w`, height `h`."""

    x: float
    y: float
    w: float
    h: float

    @property
    def left(self) -> float:
        return self.x - self.w / 2

    @property
    def bottom(self) -> float:
        return self.y + self.h


@dataclass
class Layout:
    boxes: dict[str, Box]
    routes: dict[tuple[str, str], list[tuple[float, float]]]
    width: float
    height: float
    layer_count: int


def _layers(g: nx.DiGraph, pinned_top: set[str]) -> dict[str, int]:
    layer: dict[str, int] = {}
    for depth, generation in enumerate(nx.topological_generations(g)):
        for node in generation:
            layer[node] = depth
    # Walk sources from the bottom up so a constant feeding another constant lands above it.
    for node in sorted(g.nodes, key=lambda n: -layer[n]):
        if g.in_degree(node) == 0 and node not in pinned_top and g.out_degree(node) > 0:
            layer[node] = max(0, min(layer[s] for s in g.successors(node)) - 1)
    return layer


def _isotonic(targets: Sequence[float], weights: Sequence[float]) -> list[float]:
    """The nondecreasing sequence closest to `targets` in weighted least squares (PAVA)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for t, w in zip(targets, weights, strict=True):
        blocks.append([t, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    out: list[float] = []
    for mean, _, count in blocks:
        out.extend([mean] * int(count))
    return out


def _crossings(upper: list[str], lower: list[str], succ: dict[str, list[str]]) -> int:
    pos = {n: i for i, n in enumerate(lower)}
    ends = [pos[t] for n in upper for t in sorted(succ[n], key=pos.__getitem__)]
    # Pairs of edges whose lower ends are out of order, counted by insertion into a sorted list.
    count = 0
    seen: list[int] = []
    for e in ends:
        lo, hi = 0, len(seen)
        while lo < hi:
            mid = (lo + hi) // 2
            if seen[mid] <= e:
                lo = mid + 1
            else:
                hi = mid
        count += len(seen) - lo
        seen.insert(lo, e)
    return count


def layered_layout(
    sizes: dict[str, tuple[float, float]], edges: Sequence[tuple[str, str]], *, pinned_top: Sequence[str] = ()
) -> Layout:
    """Place boxes of the given (width, height), in insertion order, and route `edges` between them.

    `pinned_top` names sources that stay in the first layer (the graph inputs).
    """
    order = {n: i for i, n in enumerate(sizes)}
    g = nx.DiGraph()
    g.add_nodes_from(sizes)
    g.add_edges_from(edges)
    layer = _layers(g, set(pinned_top))

    # Split long edges into unit steps through dummy points.
    width = {n: sizes[n][0] for n in sizes}
    succ: dict[str, list[str]] = {n: [] for n in sizes}
    pred: dict[str, list[str]] = {n: [] for n in sizes}
    chains: dict[tuple[str, str], list[str]] = {}
    for u, v in edges:
        chain = [u]
        for step in range(layer[u] + 1, layer[v]):
            dummy = f" dummy {len(width)}"
            width[dummy] = _DUMMY_WIDTH
            layer[dummy] = step
            order[dummy] = len(order)
            succ[dummy], pred[dummy] = [], []
            chain.append(dummy)
        chain.append(v)
        for a, b in pairwise(chain):
            succ[a].append(b)
            pred[b].append(a)
        chains[(u, v)] = chain

    layer_count = max(layer.values(), default=-1) + 1
    rows: list[list[str]] = [[] for _ in range(layer_count)]
    for node in sorted(layer, key=order.__getitem__):
        rows[layer[node]].append(node)

    rows = _order_rows(rows, succ, pred)
    xs = _assign_x(rows, width, succ, pred)

    heights = [max((sizes[n][1] for n in row if n in sizes), default=0.0) for row in rows]
    tops: list[float] = []
    y = MARGIN
    for h in heights:
        tops.append(y)
        y += h + V_GAP
    left = min((xs[n] - width[n] / 2 for n in xs), default=0.0)
    shift = MARGIN - left
    boxes: dict[str, Box] = {}
    dummy_points: dict[str, tuple[float, float]] = {}
    for depth, row in enumerate(rows):
        for node in row:
            x = round(xs[node] + shift, 1)
            if node in sizes:
                w, h = sizes[node]
                boxes[node] = Box(x, round(tops[depth] + (heights[depth] - h) / 2, 1), w, h)
            else:
                dummy_points[node] = (x, round(tops[depth] + heights[depth] / 2, 1))
    routes: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for (u, v), chain in chains.items():
        points = [(boxes[u].x, boxes[u].bottom)]
        points += [dummy_points[d] for d in chain[1:-1]]
        points.append((boxes[v].x, boxes[v].y))
        routes[(u, v)] = points
    total_width = max((b.x + b.w / 2 for b in boxes.values()), default=0.0) + MARGIN
    total_height = y - V_GAP + MARGIN if rows else 2 * MARGIN
    return Layout(boxes, routes, round(total_width, 1), round(total_height, 1), layer_count)


def _order_rows(rows: list[list[str]], succ: dict[str, list[str]], pred: dict[str, list[str]]) -> list[list[str]]:
    def total(candidate: list[list[str]]) -> int:
        return sum(_crossings(a, b, succ) for a, b in pairwise(candidate))

    best, best_count = [list(r) for r in rows], total(rows)
    current = [list(r) for r in rows]
    for sweep in range(_SWEEPS):
        down = sweep % 2 == 0
        indices = range(1, len(current)) if down else range(len(current) - 2, -1, -1)
        for i in indices:
            ref = current[i - 1] if down else current[i + 1]
            pos = {n: k for k, n in enumerate(ref)}
            neighbours = pred if down else succ

            def key(item: tuple[int, str], pos: dict[str, int] = pos, neighbours: dict[str, list[str]] = neighbours) -> float:
                k, node = item
                linked = [pos[n] for n in neighbours[node] if n in pos]
                return sum(linked) / len(linked) if linked else float(k)

            current[i] = [n for _, n in sorted(enumerate(current[i]), key=key)]
        count = total(current)
        if count < best_count:
            best, best_count = [list(r) for r in current], count
    return best


def _place_row(row: list[str], desired: dict[str, float], width: dict[str, float]) -> dict[str, float]:
    offsets = [0.0]
    for a, b in pairwise(row):
        offsets.append(offsets[-1] + (width[a] + width[b]) / 2 + H_GAP)
    weights = [_DUMMY_WEIGHT if n.startswith(" dummy") else 1.0 for n in row]
    fitted = _isotonic([desired[n] - off for n, off in zip(row, offsets, strict=True)], weights)
    return {n: y + off for n, y, off in zip(row, fitted, offsets, strict=True)}


def _assign_x(rows: list[list[str]], width: dict[str, float], succ: dict[str, list[str]], pred: dict[str, list[str]]) -> dict[str, float]:
    xs: dict[str, float] = {}
    for row in rows:
        span = sum(width[n] for n in row) + H_GAP * (len(row) - 1)
        x = -span / 2
        for n in row:
            xs[n] = x + width[n] / 2
            x += width[n] + H_GAP
    passes = [("down", pred), ("up", succ)] * _X_ROUNDS + [("both", None), ("down", pred)]
    for direction, neighbours in passes:
        sequence = rows if direction != "up" else rows[::-1]
        for row in sequence:
            desired = {}
            for n in row:
                linked = (pred[n] + succ[n]) if neighbours is None else neighbours[n]
                desired[n] = sum(xs[m] for m in linked) / len(linked) if linked else xs[n]
            xs.update(_place_row(row, desired, width))
    return xs
