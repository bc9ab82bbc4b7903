"""Latency tables: measured per-layer latency as a function of kept widths, and what a selection costs.

A `LatencyTable` holds, for every compute node of a graph (conv, transposed conv, linear, attention,
matmul), its latency measured alone on one device at a small grid of kept input and output widths,
plus a model of everything else. `ai.latency_table` (`asgnas_ir.backends.torch.latency`) measures
it; this module only reads it, so estimating needs no framework (and imports no backend).

The latency model of a selection (the ids of the zeroed groups):

    estimate = remainder_fixed_ms + remainder_scaled_ms * rest + sum over profiled n of T_n(kept_in_n, kept_out_n)

- kept_in_n / kept_out_n: the channels of the node's first input / first output that survive the
  selection (heads for attention and per-head matmuls). In prune mode they are read from the
  dependency graph's channel → group map (no subnet is built); in erase and both modes from the
  shapes of `subnet(graph, space, zero_groups)`, where an erased node costs nothing.
- T_n: bilinear interpolation in the measured grid, clamped to its edges (below the narrowest
  measured width the table keeps that width's latency: a layer that small is dominated by the
  fixed cost of a kernel launch). Nodes whose in and out widths move together (grouped and
  depthwise convs, attention heads) have a one-dimensional table along the output width.
- The grid is made non-decreasing in both widths before interpolating (each entry becomes the
  smallest latency measured at that width or any wider one), so removing channels never
  predicts a slower network and every saving is >= 0. A narrower layer that measured slower than
  a wider one is timing noise on an aligned grid; the raw medians stay in `ms`.
- The remainder (norms, activations, pooling, adds, reshapes, Python dispatch) is what the full
  model's measured latency leaves after the profiled nodes at full width. It is split into a
  fixed part and a part proportional to `rest`, the kept fraction of the elements the
  unprofiled nodes write (memory-bound ops cost about their output size). The split is fitted
  (`fit_remainder`) to the generated code of random sub-networks keeping about 3/4, 1/2 and 1/4
  of the groups (the calibration). A constant remainder alone is badly wrong at larger batches,
  where a ResNet's batch norms and max pool take much of the time and shrink with the channels;
  at batch 1 on a CPU the fit usually finds the remainder mostly fixed (dispatch). The scaled part
  also absorbs what layers cost more inside the network than alone (a cold cache, allocation).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, PrivateAttr, model_validator

from asgnas_ir.errors import AsgnasError
from asgnas_ir.ir.graph import Graph
from asgnas_ir.ir.ops import Op
from asgnas_ir.ir.symbolic import evaluate

FORMAT_VERSION = 1

# The ops whose cost follows the widths prune mode changes. Embedding is a gather (its cost is a
# copy of the kept row width) and stays in the remainder with the other memory-bound ops.
PROFILED_OPS = frozenset({Op.CONV, Op.CONV_TRANSPOSE, Op.LINEAR, Op.ATTENTION, Op.MATMUL})


class LatencyKey(BaseModel):
    """What a measurement depends on: a table is reused (from the disk cache) only when all of it agrees."""

    graph_fingerprint: str
    device: str = Field(description="torch device string: cpu, cuda:0, mps")
    device_name: str = Field(description="CPU model or GPU name, so a cache shared between machines never mixes them")
    threads: int = Field(description="torch intra-op threads (CPU timings scale with them; 0 on GPUs)")
    dtype: str
    batch: int
    torch_version: str
    fractions: tuple[float, ...]
    align: int
    warmup: int
    repeats: int

    def cache_name(self) -> str:
        import hashlib

        digest = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]
        return f"{self.graph_fingerprint}-{self.device.replace(':', '')}-{self.dtype}-b{self.batch}-{digest}.json"


class NodeLatency(BaseModel):
    """The measured latency of one node at a grid of kept widths.

    `ms[i][j]` is the median latency at input width `in_widths[i]` and output width `out_widths[j]`.
    When `tied` (the widths move together: grouped/depthwise conv, attention heads) `ms` has one
    row: `ms[0][j]` was measured at (`in_widths[j]`, `out_widths[j]`). An axis no group can shrink
    has one width, the full one."""

    op: str
    source: str = ""
    in_full: int
    out_full: int
    tied: bool = False
    in_widths: list[int]
    out_widths: list[int]
    ms: list[list[float]]
    _envelope: np.ndarray | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _grid_shape(self) -> NodeLatency:
        rows = 1 if self.tied else len(self.in_widths)
        if self.tied and len(self.in_widths) != len(self.out_widths):
            raise ValueError("a tied node pairs each out width with one in width: the lists must have equal length")
        if len(self.ms) != rows or any(len(row) != len(self.out_widths) for row in self.ms):
            raise ValueError(f"ms must be {rows} x {len(self.out_widths)} for these widths")
        for widths in (self.in_widths, self.out_widths):
            if widths != sorted(set(widths)) and not self.tied:
                raise ValueError("widths must be strictly increasing")
        return self

    def __eq__(self, other: object) -> bool:
        # the fields only: the private caches (interpolation envelope, per-graph arrays) are not state
        return type(other) is type(self) and self.model_dump() == other.model_dump()  # type: ignore[union-attr]

    __hash__ = None  # type: ignore[assignment]

    def full_ms(self) -> float:
        return float(self.ms[-1][-1])

    def lookup(self, kept_in: np.ndarray, kept_out: np.ndarray) -> np.ndarray:
        """Interpolated latency (ms) at arrays of kept widths, from the monotone envelope of the grid."""
        if self._envelope is None:
            self._envelope = _monotone(np.asarray(self.ms, dtype=np.float64))
        grid = self._envelope
        out = np.asarray(kept_out, dtype=np.float64)
        if self.tied:
            j0, j1, t = _bracket(np.asarray(self.out_widths, dtype=np.float64), out)
            row = grid[0]
            return row[j0] * (1 - t) + row[j1] * t
        i0, i1, u = _bracket(np.asarray(self.in_widths, dtype=np.float64), np.asarray(kept_in, dtype=np.float64))
        j0, j1, t = _bracket(np.asarray(self.out_widths, dtype=np.float64), out)
        return (
            grid[i0, j0] * (1 - u) * (1 - t) + grid[i0, j1] * (1 - u) * t
            + grid[i1, j0] * u * (1 - t) + grid[i1, j1] * u * t
        )


def _monotone(grid: np.ndarray) -> np.ndarray:
    """Each entry becomes the minimum over itself and every entry at wider widths (both axes)."""
    env = np.minimum.accumulate(grid[::-1, :], axis=0)[::-1, :]
    return np.minimum.accumulate(env[:, ::-1], axis=1)[:, ::-1]


def _bracket(grid: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the grid points around each query and the weight of the upper one (clamped to the grid)."""
    query = np.clip(query, grid[0], grid[-1])
    if len(grid) == 1:
        zeros = np.zeros(query.shape, dtype=np.int64)
        return zeros, zeros, np.zeros(query.shape)
    hi = np.clip(np.searchsorted(grid, query, side="left"), 1, len(grid) - 1)
    lo = hi - 1
    t = (query - grid[lo]) / (grid[hi] - grid[lo])
    return lo, hi, t


class CalibrationPoint(BaseModel):
    """One measured sub-network: its prune-mode zero groups, the kept share of the rest, its measured
    latency and what the profiled nodes predict for it."""

    zero: list[int]
    rest: float
    ms: float
    profiled_ms: float


class LatencyTable(BaseModel):
    """Measured latency of a graph's compute nodes over kept widths on one device (see the module doc)."""

    format_version: int = FORMAT_VERSION
    key: LatencyKey
    full_ms: float = Field(description="the full model's measured latency (its generated PyTorch code)")
    remainder_fixed_ms: float = Field(description="the part of the remainder that does not shrink with the widths")
    remainder_scaled_ms: float = Field(description="the part of the remainder proportional to the unprofiled nodes' output size")
    calibration: list[CalibrationPoint] = Field(
        default_factory=list, description="the sub-networks measured to split the remainder (none: it is constant)"
    )
    nodes: dict[str, NodeLatency]
    seconds: float = Field(0.0, description="how long the measurement took")
    _views: dict[str, _GraphView] = PrivateAttr(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        # the fields only: the private caches (interpolation envelope, per-graph arrays) are not state
        return type(other) is type(self) and self.model_dump() == other.model_dump()  # type: ignore[union-attr]

    __hash__ = None  # type: ignore[assignment]

    # ---- convenience views of the key -----------------------------------------------------------
    @property
    def device(self) -> str:
        return self.key.device

    @property
    def dtype(self) -> str:
        return self.key.dtype

    @property
    def batch(self) -> int:
        return self.key.batch

    @property
    def torch_version(self) -> str:
        return self.key.torch_version

    @property
    def graph_fingerprint(self) -> str:
        return self.key.graph_fingerprint

    @property
    def remainder_ms(self) -> float:
        """The remainder with nothing removed (fixed + scaled): about full_ms minus the profiled nodes."""
        return self.remainder_fixed_ms + self.remainder_scaled_ms

    # ---- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.model_dump_json(indent=1))
        tmp.replace(path)  # a reader never sees half a table (parallel runs share the cache)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise AsgnasError(f"cannot read latency table {path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            found = data.get("format_version") if isinstance(data, dict) else None
            raise AsgnasError(
                f"latency table {path} has format version {found}, this asgnas-ir reads {FORMAT_VERSION}; "
                "measure it again with ai.latency_table / asgnas profile"
            )
        return cls.model_validate(data)

    # ---- the latency model -----------------------------------------------------------------------
    def estimate(self, graph: Graph, space: Any, zero_groups: Iterable[int]) -> float:
        """Predicted latency (ms) of the sub-network left when `zero_groups` are removed."""
        return sum(self.breakdown(graph, space, zero_groups).values())

    def breakdown(self, graph: Graph, space: Any, zero_groups: Iterable[int]) -> dict[str, float]:
        """The estimate's terms: ms per profiled node (0 for an erased one), `<remainder fixed>` and
        `<remainder scaled>` (the scaled part at this selection's kept output size)."""
        selection = self.select(graph, space, zero_groups)
        terms = {
            nid: 0.0 if w is None else float(self.nodes[nid].lookup(np.array([w[0]]), np.array([w[1]]))[0])
            for nid, w in selection.widths.items()
        }
        terms["<remainder fixed>"] = self.remainder_fixed_ms
        terms["<remainder scaled>"] = self.remainder_scaled_ms * selection.rest
        return terms

    def select(self, graph: Graph, space: Any, zero_groups: Iterable[int]) -> Selection:
        """What the model reads of a selection: kept widths per profiled node, kept share of the rest."""
        _check_graph(graph, space, self.graph_fingerprint)
        return self._view(graph).select(graph, space, zero_groups)

    def profiled_ms(self, selection: Selection) -> float:
        return sum(float(self.nodes[n].lookup(np.array([w[0]]), np.array([w[1]]))[0]) for n, w in selection.widths.items() if w)

    def saving(self, graph: Graph, space: Any, group_id: int, zero_groups: Iterable[int] = ()) -> float:
        """Predicted latency reduction (ms, >= 0) of removing group `group_id` on top of `zero_groups`."""
        space.group(group_id)
        return float(self.savings(graph, space, zero_groups)[group_id])

    def savings(self, graph: Graph, space: Any, zero_groups: Iterable[int] = ()) -> np.ndarray:
        """For every group of `space`, the predicted latency reduction (ms, >= 0) of removing it alone on
        top of `zero_groups` (already removed groups: 0). Vectorised in prune mode; erase and both modes
        build one subnet per group, and a group whose removal is invalid on top of the selection saves 0.

        Optimizers rank groups by score per unit of this saving; add a small epsilon before dividing:
        a group of a layer already at its narrowest measured width saves only its remainder share."""
        _check_graph(graph, space, self.graph_fingerprint)
        zero = sorted({int(i) for i in zero_groups})
        for gid in zero:
            space.group(gid)
        if space.mode == "prune":
            return self._prune_savings(graph, space, zero)
        base = self.estimate(graph, space, zero)
        out = np.zeros(len(space.groups))
        taken = set(zero)
        for gid in range(len(space.groups)):
            if gid in taken or not space.is_valid([*zero, gid]):
                continue
            try:
                out[gid] = max(0.0, base - self.estimate(graph, space, [*zero, gid]))
            except AsgnasError:  # the subnet would empty a value: not removable on top of this selection
                continue
        return out

    def _view(self, graph: Graph) -> _GraphView:
        # the channel → group arrays of a graph never change: build them once per table and graph
        fingerprint = graph.fingerprint()
        if fingerprint not in self._views:
            self._views[fingerprint] = _GraphView(graph, list(self.nodes), self.key.batch)
        return self._views[fingerprint]

    def _prune_savings(self, graph: Graph, space: Any, zero: list[int]) -> np.ndarray:
        view = self._view(graph)
        zero_arr = np.asarray(zero, dtype=np.int64)
        out = self.remainder_scaled_ms * view.rest_per_group(len(space.groups))
        for nid, axes in view.axes.items():
            entry = self.nodes[nid]
            kin, kout = axes.kept(zero_arr)
            deltas = axes.deltas(zero_arr)
            if deltas is None:
                continue
            gids, din, dout = deltas
            now = entry.lookup(np.array([kin]), np.array([kout]))[0]
            after = entry.lookup(np.maximum(kin - din, 0), np.maximum(kout - dout, 0))
            np.add.at(out, gids, np.maximum(now - after, 0.0))
        out[zero_arr] = 0.0
        return out


def fit_remainder(full_ms: float, profiled_full: float, points: Sequence[CalibrationPoint]) -> tuple[float, float]:
    """(fixed, scaled) remainder fitted to the measured full model and calibration sub-networks.

    Each measurement gives a point (rest, measured - profiled); remainder(rest) = fixed + scaled * rest
    is their least-squares line with both parts >= 0 (the full model is one point among them, not a
    constraint: one noisy measurement must not tilt every estimate). Without points that shrank
    the rest by 10% or more the remainder is the constant full - profiled, floored at 0."""
    full_rest = max(0.0, full_ms - profiled_full)
    used = [p for p in points if p.rest <= 0.9]
    if not used:
        return full_rest, 0.0
    x = np.array([1.0, *(p.rest for p in used)])
    y = np.array([full_rest, *(max(0.0, p.ms - p.profiled_ms) for p in used)])
    slope = float(np.dot(x - x.mean(), y - y.mean()) / np.dot(x - x.mean(), x - x.mean()))
    fixed = float(y.mean() - slope * x.mean())
    if slope < 0:  # the remainder did not shrink with the rest: it is constant
        return float(y.mean()), 0.0
    if fixed < 0:  # the line through the origin
        return 0.0, float(np.dot(x, y) / np.dot(x, x))
    return fixed, slope


# ---- what a selection keeps ----------------------------------------------------------------------


@dataclass
class Selection:
    """Kept (input, output) width of each profiled node (None: erased) and `rest`, the kept fraction of
    the elements the unprofiled nodes write."""

    widths: dict[str, tuple[int, int] | None]
    rest: float


class _GraphView:
    """The arrays a table reads from one graph: per profiled node its channel → group ids, per value
    the unprofiled nodes write its size at the table's batch and its channel → group ids."""

    def __init__(self, graph: Graph, nodes: list[str], batch: int) -> None:
        from asgnas_ir.pass_manager import PassManager

        deps = PassManager().analysis("dependency-graph", graph)
        self.nodes = nodes
        self.axes = _node_axes(graph, nodes, deps.value_groups)
        self.sizes = {**graph.meta.symbols, "N": batch}
        profiled = set(nodes)
        self.rest_values: list[tuple[str, float, np.ndarray | None]] = []
        for node in graph.nodes:
            if node.op in PROFILED_OPS or node.op is Op.CONSTANT or node.id in profiled:
                continue
            for name in node.outputs:
                value = graph.values[name]
                if not value.dtype.startswith(("float", "bfloat")):
                    continue
                groups = deps.value_groups.get(name)
                ids = np.asarray(groups, dtype=np.int64) if groups and max(groups) >= 0 else None
                self.rest_values.append((name, float(self.numel(value)), ids))
        self.rest_total = sum(n for _, n, _ in self.rest_values) or 1.0
        self._per_group: np.ndarray | None = None

    def numel(self, value: Any) -> int:
        return int(np.prod([evaluate(d, self.sizes) for d in value.symbolic], dtype=np.int64))

    def rest_per_group(self, count: int) -> np.ndarray:
        """The fraction of the rest each channel group removes (channel groups are disjoint: it adds up)."""
        if self._per_group is None or len(self._per_group) != count:
            per = np.zeros(count)
            for _, numel, ids in self.rest_values:
                if ids is not None:
                    kept = ids[ids >= 0]
                    np.add.at(per, kept[kept < count], numel / len(ids))
            self._per_group = per / self.rest_total
        return self._per_group

    def select(self, graph: Graph, space: Any, zero_groups: Iterable[int]) -> Selection:
        zero = sorted({int(i) for i in zero_groups})
        for gid in zero:
            space.group(gid)
        if space.mode == "prune":
            zero_arr = np.asarray(zero, dtype=np.int64)
            widths: dict[str, tuple[int, int] | None] = {}
            for nid in self.nodes:
                axes = self.axes[nid]
                kin, kout = axes.kept(zero_arr)
                if (axes.in_groups is not None and kin == 0) or (axes.out_groups is not None and kout == 0):
                    raise AsgnasError(
                        f"removing groups {zero} leaves node '{nid}' (from '{graph.node(nid).source}') with no "
                        "channels; keep at least one group of every layer"
                    )
                widths[nid] = (kin, kout)
            rest = 1.0 - float(self.rest_per_group(len(space.groups))[zero_arr].sum()) if zero else 1.0
            return Selection(widths, max(rest, 0.0))
        from asgnas_ir.api import subnet

        sub = subnet(graph, space, zero)
        present = {n.id for n in sub.nodes}
        widths = {}
        for nid in self.nodes:
            if nid not in present:
                widths[nid] = None
                continue
            _, in_axis, _, out_axis = measured_axes(graph, nid)
            node = sub.node(nid)
            kin = sub.values[node.inputs[0]].shape[in_axis] if in_axis is not None else 0
            kout = sub.values[node.outputs[0]].shape[out_axis] if out_axis is not None else 0
            widths[nid] = (kin, kout)
        kept = 0.0
        for name, _, _ in self.rest_values:
            producer = graph.producer(name)
            if producer is not None and producer.id in present and name in sub.values:
                kept += self.numel(sub.values[name])
        return Selection(widths, kept / self.rest_total)


@dataclass
class _Axes:
    """The channel → group ids of one node's measured input and output axes (None: the axis is fixed)."""

    in_full: int
    out_full: int
    in_groups: np.ndarray | None
    out_groups: np.ndarray | None

    def kept(self, zero: np.ndarray) -> tuple[int, int]:
        kin = self.in_full if self.in_groups is None else int((~np.isin(self.in_groups, zero)).sum())
        kout = self.out_full if self.out_groups is None else int((~np.isin(self.out_groups, zero)).sum())
        return kin, kout

    def deltas(self, zero: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(group ids not in `zero` touching this node, channels each removes from the input, from the output)."""
        counts: dict[int, list[int]] = {}
        for side, groups in ((0, self.in_groups), (1, self.out_groups)):
            if groups is None:
                continue
            ids, n = np.unique(groups[groups >= 0], return_counts=True)
            for gid, c in zip(ids.tolist(), n.tolist(), strict=True):
                counts.setdefault(gid, [0, 0])[side] = c
        for gid in zero.tolist():
            counts.pop(gid, None)
        if not counts:
            return None
        gids = np.fromiter(counts, dtype=np.int64, count=len(counts))
        d = np.asarray(list(counts.values()), dtype=np.int64)
        return gids, d[:, 0], d[:, 1]


def measured_axes(graph: Graph, node_id: str) -> tuple[str | None, int | None, str | None, int | None]:
    """(input value, its measured axis, output value, its measured axis) of a profiled node.

    The measured input is the first input's channel axis (a conv's or linear's input channels, the
    query's heads or features), the measured output the first output's. None where the value has no
    channel axis (the width is fixed)."""
    node = graph.node(node_id)
    x, y = graph.values[node.inputs[0]], graph.values[node.outputs[0]]
    if node.op is Op.LINEAR:
        return node.inputs[0], len(x.shape) - 1, node.outputs[0], len(y.shape) - 1
    return (
        node.inputs[0] if x.channel_axis is not None else None, x.channel_axis,
        node.outputs[0] if y.channel_axis is not None else None, y.channel_axis,
    )


def _node_axes(graph: Graph, nodes: Iterable[str], value_groups: dict[str, list[int]]) -> dict[str, _Axes]:
    result: dict[str, _Axes] = {}
    for nid in nodes:
        in_value, in_axis, out_value, out_axis = measured_axes(graph, nid)
        node = graph.node(nid)
        in_full = graph.values[node.inputs[0]].shape[in_axis] if in_value is not None else 0
        out_full = graph.values[node.outputs[0]].shape[out_axis] if out_value is not None else 0

        def groups_of(value: str | None, axis: int | None) -> np.ndarray | None:
            if value is None or axis != graph.values[value].channel_axis:
                return None
            groups = value_groups.get(value)
            if not groups or max(groups) < 0:
                return None
            return np.asarray(groups, dtype=np.int64)

        result[nid] = _Axes(in_full, out_full, groups_of(in_value, in_axis), groups_of(out_value, out_axis))
    return result


def _check_graph(graph: Graph, space: Any, fingerprint: str) -> None:
    if graph.fingerprint() != fingerprint:
        raise AsgnasError(
            f"this latency table was measured for another graph (fingerprint {fingerprint}, this graph "
            f"{graph.fingerprint()}); measure this one with ai.latency_table(graph, device=...)"
        )
    if space.graph_fingerprint and space.graph_fingerprint != fingerprint:
        raise AsgnasError(
            f"the search space was built for another graph (fingerprint {space.graph_fingerprint}) than the latency "
            f"table ({fingerprint}); build both from the same graph"
        )


def grid_widths(full: int, fractions: Sequence[float], unit: int, align: int) -> list[int]:
    """The widths at which one axis is measured: each fraction of `full`, in whole groups of `unit`
    channels, rounded to a multiple of `align` where that is at least `align` (aligned selections
    are what deployments use, and an unaligned grid point would spread its penalty over its
    neighbours by interpolation); always including `full`."""
    widths = {full}
    for f in fractions:
        w = max(unit, int(round(f * full / unit)) * unit)
        if unit == 1 and align > 1 and w >= align:
            w = int(round(w / align)) * align
        widths.add(min(full, w))
    return sorted(widths)


@dataclass(frozen=True)
class LatencyTarget:
    """A latency budget for an optimizer's selection: choose groups until the sub-network's estimated
    latency (`table.estimate`) is at most `ms`, instead of a fixed share of the groups.

    `graph` is the graph the table and the search space were built from (the estimate reads its
    channel → group map)."""

    table: LatencyTable
    graph: Graph
    ms: float

    def __post_init__(self) -> None:
        if not self.ms > 0:
            raise AsgnasError(f"a latency target must be a positive number of ms, got {self.ms}")

    def select(self, space: Any, redundancy: Sequence[float] | np.ndarray, align: int = 1) -> list[int]:
        """The groups to remove, in order: by redundancy per ms saved, until the estimate meets `ms`.

        Each group's priority is its importance rank (1 / n for the most redundant group by
        `redundancy`, 1 for the least) divided by the latency its removal alone saves, so a redundant
        group of a slow layer goes first and one that saves nothing goes last. The valid greedy walk
        along that order (`SearchSpace.greedy_valid`) gives the candidates; the shortest prefix whose
        (aligned) selection meets the budget is chosen by bisection over the prefix length, as the
        estimate only falls when groups are added. When even all candidates miss the budget, all of
        them are returned (the caller warns)."""
        scores = np.asarray(redundancy, dtype=np.float64)
        n = len(space.groups)
        if len(scores) != n:
            raise AsgnasError(f"redundancy has {len(scores)} entries for a search space of {n} groups")
        # tied scores share their rank (the mean of their places): equally redundant groups are then
        # ordered by what they save, not by their ids
        from scipy.stats import rankdata

        rank = rankdata(-scores, method="average")
        saving = self.table.savings(self.graph, space)
        floor = max(float(saving.max()), 1e-12) * 1e-9
        order = np.argsort(rank / n / np.maximum(saving, floor), kind="stable").tolist()
        candidates = space.greedy_valid(order)

        def chosen(count: int) -> list[int]:
            prefix = candidates[:count]
            return space.aligned(prefix, align, scores) if align > 1 else prefix

        def meets(count: int) -> bool:
            return self.table.estimate(self.graph, space, chosen(count)) <= self.ms

        if meets(0):
            return []
        low, high = 0, len(candidates)  # meets(low) is False; meets(high) may be False too
        if not meets(high):
            return chosen(high)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if meets(middle) else (middle, high)
        return chosen(high)
