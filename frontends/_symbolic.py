"""Which dims of a lowered graph are symbolic (DESIGN §2), found by lowering it again at other sizes.

The batch (axis 0 of every input) and the sequence length (axis 1 of integer inputs of rank >= 2)
are the symbols. Rather than teaching every converter of three frontends to carry expressions, the
model is lowered once more per symbol with only that symbol's size changed, and the graphs are
compared value by value: a dim that did not move is static; one that moved is fitted as an integer
polynomial in the symbols (`asgnas_ir.ir.symbolic.fit`). The result is exact for whatever the source
computes from its inputs' sizes (`x.shape[0]`, `view(-1, ...)`, ONNX Shape arithmetic, Keras' None
batch), which a per-op symbolic rule would have to re-derive for every converter.

A model that cannot run at the other size (it fixes its batch: `view(1, -1)` feeding a layer, an
ONNX file exported with a static batch), or whose graph changes structure with it, keeps static
dims; `graph.meta.static_reason` says which and why, and `check` runs it at the example's size only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from asgnas_ir.ir.graph import Graph
from asgnas_ir.ir.symbolic import BATCH, SEQUENCE, evaluate, fit

Lowerer = Callable[[tuple], Graph]


def example_symbols(graph: Graph) -> dict[str, int]:
    """The symbols the graph's inputs carry and their example sizes ({"N": 2, "S": 16})."""
    sizes: dict[str, int] = {}
    for name in graph.inputs:
        value = graph.values[name]
        if value.shape:
            sizes.setdefault(BATCH, value.shape[0])
        if _is_token_input(value.dtype, value.shape):
            sizes.setdefault(SEQUENCE, value.shape[1])
    return sizes


def _is_token_input(dtype: str, shape: Sequence[int]) -> bool:
    return len(shape) >= 2 and dtype.startswith(("int", "uint"))


def varied_size(symbol: str, size: int) -> int:
    """The other size a symbol is tried at: one more batch row; one token fewer (a model's position
    table may end at the example's length), or one more when that would leave a single token."""
    if symbol == BATCH:
        return size + 1
    return size - 1 if size > 2 else size + 1


def resized_inputs(inputs: Sequence[Any], graph: Graph, symbol: str, size: int) -> tuple:
    """The example inputs with `symbol`'s axis at `size`: rows repeated or dropped, so token ids stay
    valid ids. Without example inputs (an ONNX or Keras model read with its declared shapes), zeros
    of the graph inputs' shapes and dtypes."""
    if not inputs:
        inputs = [np.zeros(graph.values[n].shape, dtype=graph.values[n].dtype) for n in graph.inputs]
    result = []
    for x, name in zip(inputs, graph.inputs, strict=False):
        value = graph.values[name]
        axis = 0 if symbol == BATCH else 1 if _is_token_input(value.dtype, value.shape) else None
        result.append(x if axis is None or not value.shape else _resize(x, axis, size))
    result.extend(inputs[len(result):])
    return tuple(result)


def _resize(x: Any, axis: int, size: int) -> Any:
    current = int(x.shape[axis])
    if size <= current:
        index = [slice(None)] * axis + [slice(0, size)]
        return x[tuple(index)]
    repeats = size - current
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return torch.cat([x, x.narrow(axis, 0, 1).expand(*[repeats if a == axis else -1 for a in range(x.dim())])], dim=axis)
    array = np.asarray(x)
    return np.concatenate([array, np.repeat(np.take(array, [0], axis=axis), repeats, axis=axis)], axis=axis)


def mark_symbolic_dims(graph: Graph, inputs: Sequence[Any], relower: Lowerer) -> Graph:
    """The graph with `dims` set on its values and `meta.symbols`; see the module docstring.

    NOTE: [Size-1 examples] A frontend drops an op that is an identity at the example's sizes: a
    class token `expand`ed to a batch of 1, a squeeze of a single token. The graph at another size
    then has one node more. When that happens for a symbol whose example size is 1, the samples are
    taken around size 2 instead and the graph at 2 is brought back to the example's sizes (its value
    shapes and size-bearing attributes evaluated from the fitted expressions), so the op the example
    hid is kept and generated code expands to the batch it is given.
    """
    sizes = example_symbols(graph)
    if not sizes:
        return graph
    symbols = tuple(sizes)
    notes: list[str] = []
    base_sizes = dict(sizes)
    base_graph = graph
    samples, mismatched = _samples(base_graph, base_sizes, inputs, relower, notes)
    rebase = [s for s in mismatched if sizes[s] == 1 and varied_size(s, 1) == 2]
    if rebase:
        base_sizes.update({s: 2 for s in rebase})
        try:
            # the variant that showed the mismatch was lowered at exactly these sizes when it is the only one
            base_graph = mismatched[rebase[0]] if len(rebase) == 1 else relower(_inputs_at(inputs, graph, base_sizes))
        except Exception as exc:  # noqa: BLE001  (whatever stops the model at that size makes it static)
            notes.append(f"the model did not lower at {_sizes_text(base_sizes)}: {_first_line(exc)}")
        else:
            notes.clear()
            samples, mismatched = _samples(base_graph, base_sizes, inputs, relower, notes)
    varied = [s for s in symbols if any(p[symbols.index(s)] != base_sizes[s] for p in samples)]
    dims = _fit_dims(base_graph, samples, symbols, notes)
    if dims is None or not varied:
        graph.meta.static_reason = "; ".join(notes) + "; generated code keeps the example's sizes"
        return graph
    if base_graph is not graph:
        rescaled = _rescale(base_graph, samples, symbols, dims, sizes, notes)
        if rescaled is None:
            graph.meta.static_reason = "; ".join(notes) + "; generated code keeps the example's sizes"
            return graph
        graph = rescaled
    for name, value_dims in dims.items():
        graph.values[name] = graph.values[name].model_copy(update={"dims": value_dims})
    graph.meta.symbols = {s: sizes[s] for s in varied}
    graph.meta.static_reason = "; ".join(notes)
    graph.touch()
    return graph


def _sizes_text(sizes: dict[str, int]) -> str:
    return ", ".join(f"{s}={v}" for s, v in sizes.items())


def _inputs_at(inputs: Sequence[Any], graph: Graph, target: dict[str, int]) -> tuple:
    """The example inputs resized to every symbol's size in `target` (`graph`: the example's graph)."""
    result = tuple(inputs)
    current = graph
    for symbol, size in target.items():
        result = resized_inputs(result, current, symbol, size)
    return result


def _samples(
    base: Graph, base_sizes: dict[str, int], inputs: Sequence[Any], relower: Lowerer, notes: list[str]
) -> tuple[dict[tuple[int, ...], Graph], dict[str, Graph]]:
    """The graphs at the base sizes and with each symbol moved on its own; the variants that changed
    the graph's structure, by symbol."""
    symbols = tuple(base_sizes)
    point = tuple(base_sizes.values())
    samples = {point: base}
    mismatched: dict[str, Graph] = {}
    for i, symbol in enumerate(symbols):
        target = dict(base_sizes)
        target[symbol] = varied_size(symbol, base_sizes[symbol])
        try:
            variant = relower(_inputs_at(inputs, base, target))
        except Exception as exc:  # noqa: BLE001  (whatever stops the model at that size makes it static)
            notes.append(f"{symbol} stays {base_sizes[symbol]}: the model did not lower at {symbol}={target[symbol]} ({_first_line(exc)})")
            continue
        mismatch = _structure_mismatch(base, variant)
        if mismatch:
            notes.append(f"{symbol} stays {base_sizes[symbol]}: the graph changes with it ({mismatch})")
            mismatched[symbol] = variant
            continue
        samples[point[:i] + (target[symbol],) + point[i + 1:]] = variant
    return samples, mismatched


def _fit_dims(
    base: Graph, samples: dict[tuple[int, ...], Graph], symbols: tuple[str, ...], notes: list[str]
) -> dict[str, tuple[int | str, ...]] | None:
    result: dict[str, tuple[int | str, ...]] = {}
    renames = {point: _renamed(base, g) for point, g in samples.items()}
    for name, value in base.values.items():
        dims: list[int | str] = []
        for axis in range(len(value.shape)):
            seen = {point: g.values[renames[point].get(name, name)].shape[axis] for point, g in samples.items()}
            dim = fit(seen, symbols)
            if dim is None:
                notes.append(
                    f"value '%{name}' axis {axis} has sizes {sorted(set(seen.values()))} at "
                    f"{symbols}={list(seen)}, which no polynomial in {', '.join(symbols)} fits"
                )
                return None
            dims.append(dim)
        if any(isinstance(d, str) for d in dims):
            result[name] = tuple(dims)
    return result


def _rescale(
    base: Graph,
    samples: dict[tuple[int, ...], Graph],
    symbols: tuple[str, ...],
    dims: dict[str, tuple[int | str, ...]],
    sizes: dict[str, int],
    notes: list[str],
) -> Graph | None:
    """`base` (lowered at size 2 of some symbol) with its shapes and size-bearing attributes at the
    example's `sizes`: every int that moved between the samples is fitted and evaluated there."""
    values = {}
    for name, value in base.values.items():
        if name in dims:
            shape = tuple(evaluate(d, sizes) for d in dims[name])
            values[name] = value.model_copy(update={"shape": shape})
        else:
            values[name] = value
    nodes = []
    for i, node in enumerate(base.nodes):
        seen = {point: g.nodes[i].attrs.model_dump() for point, g in samples.items()}
        attrs = _rescale_field(seen, symbols, sizes)
        if attrs is None:
            notes.append(f"node '{node.id}' ({node.op.value}) has attributes that follow no polynomial in {', '.join(symbols)}")
            return None
        nodes.append(node.model_copy(update={"attrs": type(node.attrs).model_validate(attrs)}))
    return base.copy_with(values=values, nodes=nodes)


def _rescale_field(seen: dict[tuple[int, ...], Any], symbols: tuple[str, ...], sizes: dict[str, int]) -> Any:
    first = next(iter(seen.values()))
    if isinstance(first, dict):
        out = {}
        for key in first:
            value = _rescale_field({p: v[key] for p, v in seen.items()}, symbols, sizes)
            if value is None and first[key] is not None:
                return None
            out[key] = value
        return out
    if isinstance(first, (list, tuple)):
        if len({len(v) for v in seen.values()}) != 1:
            return None
        items = [_rescale_field({p: v[i] for p, v in seen.items()}, symbols, sizes) for i in range(len(first))]
        if any(item is None and first[i] is not None for i, item in enumerate(items)):
            return None
        return type(first)(items)
    if isinstance(first, int) and not isinstance(first, bool):
        dim = fit(seen, symbols)
        return None if dim is None else evaluate(dim, sizes)
    return first if all(v == first for v in seen.values()) else None


def _structure_mismatch(a: Graph, b: Graph) -> str:
    """Why `b` is not `a` at other sizes ("" when it is): the same ops in the same order reading
    the same positions. Names may differ (a constant's name from a counter the tracer keeps)."""
    if len(a.nodes) != len(b.nodes) or len(a.inputs) != len(b.inputs) or len(a.outputs) != len(b.outputs):
        return f"{len(a.nodes)} nodes vs {len(b.nodes)}"
    names = dict(zip(a.inputs, b.inputs, strict=True))
    for x, y in zip(a.nodes, b.nodes, strict=True):
        if x.op != y.op or len(x.outputs) != len(y.outputs) or [names.get(i) for i in x.inputs] != list(y.inputs):
            return f"node '{x.id}' ({x.op.value}) vs '{y.id}' ({y.op.value})"
        names.update(zip(x.outputs, y.outputs, strict=True))
    for name, value in a.values.items():
        other = b.values.get(names.get(name, name))
        if other is None or len(other.shape) != len(value.shape):
            return f"value '%{name}'"
    return ""


def _renamed(a: Graph, b: Graph) -> dict[str, str]:
    """`a`'s value names → `b`'s, by position (`b` passed `_structure_mismatch`)."""
    names = dict(zip(a.inputs, b.inputs, strict=True))
    for x, y in zip(a.nodes, b.nodes, strict=True):
        names.update(zip(x.outputs, y.outputs, strict=True))
    return names


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
