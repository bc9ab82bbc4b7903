"""Symbolic dims in generated code (DESIGN §2): sizes that follow the batch or the sequence length are
never written as the example's numbers.

Each printer binds a symbol to a local once, read off the first graph input that has it as a plain
axis (`batch = x.shape[0]`), and renders expressions in those locals (`64 * batch`, `seq_len + 1`).
A reshape target leaves one symbolic size to the framework (`-1`), so a target with a single symbolic
axis needs no local at all, which keeps most generated reshapes as short as hand-written ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from asgnas_ir.errors import CodegenError
from asgnas_ir.ir.attrs import SliceAttrs
from asgnas_ir.ir.graph import Graph
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.symbolic import format_terms, parse

SYMBOL_LOCALS = {"N": "batch", "S": "seq_len"}
SYMBOLS_ALONE = frozenset(SYMBOL_LOCALS)


def dims(graph: Graph, value: str) -> tuple[int | str, ...]:
    return graph.values[value].symbolic


def is_symbolic(graph: Graph, value: str) -> bool:
    return graph.values[value].dims is not None


def symbol_source(graph: Graph, symbol: str) -> tuple[str, int]:
    """The graph input and axis a symbol is read from."""
    for name in graph.inputs:
        for axis, dim in enumerate(dims(graph, name)):
            if dim == symbol:
                return name, axis
    raise CodegenError(f"no graph input carries the symbolic size {symbol}; the graph's dims are inconsistent")


def render(dim: int | str, local: Callable[[str], str]) -> str:
    """`dim` as a Python/int expression, with each symbol read through `local(symbol)`."""
    if isinstance(dim, int):
        return str(dim)
    parts: list[str] = []
    terms = parse(dim)
    for monomial in sorted((m for m in terms if m), key=lambda m: (len(m), m)):
        coefficient = terms[monomial]
        factors = [local(s) for s in monomial]
        if abs(coefficient) != 1:
            factors.insert(0, str(abs(coefficient)))
        parts.append(("- " if coefficient < 0 else "+ ") + " * ".join(factors))
    if terms.get(()):
        constant = terms[()]
        parts.append(("- " if constant < 0 else "+ ") + str(abs(constant)))
    text = " ".join(parts)
    return text[2:] if text.startswith("+ ") else "-" + text[2:]


def fixing(dims: tuple[int | str, ...], sizes: dict[str, int]) -> tuple[int | str, ...]:
    """`dims` with the symbols in `sizes` replaced by those sizes (a target that declares them static)."""
    out: list[int | str] = []
    for dim in dims:
        if isinstance(dim, int):
            out.append(dim)
            continue
        terms: dict[tuple[str, ...], int] = {}
        for monomial, coefficient in parse(dim).items():
            kept = tuple(sym for sym in monomial if sym not in sizes)
            for sym in monomial:
                if sym in sizes:
                    coefficient *= sizes[sym]
            terms[kept] = terms.get(kept, 0) + coefficient
        terms = {m: c for m, c in terms.items() if c}
        out.append(format_terms(terms) if any(terms.keys() - {()}) else terms.get((), 0))
    return tuple(out)


def reshape_target(graph: Graph, node: NodeBase, local: Callable[[str], str]) -> list[str]:
    """The target sizes of a reshape to `node`'s first output: static sizes as numbers, one symbolic
    size as -1 (the one with the most complex expression, so the others stay plain locals), the rest
    rendered through `local`."""
    target = dims(graph, node.outputs[0])
    symbolic = [i for i, d in enumerate(target) if isinstance(d, str)]
    if not symbolic:
        return [str(d) for d in target]
    inferred = max(symbolic, key=lambda i: (len(parse(target[i])), len(str(target[i])), i))  # type: ignore[arg-type]
    return ["-1" if i == inferred else render(d, local) for i, d in enumerate(target)]


def constant_pattern(graph: Graph, node: NodeBase) -> tuple[str, float | int | bool]:
    """How to rebuild a `constant` whose shape is symbolic: ("arange", 0) for 0, 1, 2, ... along its
    one axis, ("full", v) when every entry is v. Anything else was data the source computed at the
    example's size and cannot follow another size."""
    array = graph.weights.get(node.params["value"])
    out = graph.values[node.outputs[0]]
    if array is not None and array.ndim == 1 and np.array_equal(array, np.arange(array.shape[0])):
        return "arange", 0
    if array is not None and array.size and np.all(array == array.flat[0]):
        return "full", array.flat[0].item()
    triangle = _triangle(array, out.symbolic) if array is not None else None
    if triangle is not None:
        return "triangle", triangle
    if array is not None and all(d in SYMBOLS_ALONE or isinstance(d, int) for d in out.symbolic) and all(
        array.shape[axis] == 1 for axis, d in enumerate(out.symbolic) if isinstance(d, str)
    ):
        return "expand", 0  # one row per symbolic axis (the example's batch of 1): stored, then expanded
    raise CodegenError(
        f"node '{node.id}' (from '{node.source}') is a constant of symbolic shape {list(out.symbolic)} whose entries "
        "are neither a range nor one value; generated code cannot rebuild it at another size. Compile with the "
        "example size the model will run at, or make the model compute it from its inputs."
    )


def _triangle(array: np.ndarray, dims: tuple[int | str, ...]) -> tuple | None:
    """(on and below the diagonal, above it) when `array` is a causal mask over its last two axes
    (both symbolic, every leading axis of size 1): one value on each side of the diagonal."""
    if array.ndim < 2 or not all(isinstance(d, str) for d in dims[-2:]) or any(d != 1 for d in array.shape[:-2]):
        return None
    square = array.reshape(array.shape[-2:])
    lower = np.tril(np.ones(square.shape, dtype=bool))
    below, above = square[lower], square[~lower]
    if not below.size or not above.size or not (np.all(below == below[0]) and np.all(above == above[0])):
        return None
    return below[0].item(), above[0].item()


def slice_bounds(graph: Graph, node: NodeBase) -> tuple[int, int | None]:
    """start and stop of a slice, stop None for "to the end" and negative when it counts from the end:
    on a symbolic axis, a slice whose length follows the symbol (`x[:, 1:]` of S+1 tokens) ends
    relative to the end; one of fixed length (the class token `x[:, 0:1]`) keeps its numbers."""
    attrs: SliceAttrs = node.attrs  # type: ignore[assignment]
    size = graph.values[node.inputs[0]].shape[attrs.axis]
    out_dim = graph.values[node.outputs[0]].symbolic[attrs.axis]
    if attrs.stop >= size:
        return attrs.start, None
    if isinstance(out_dim, str) and attrs.step == 1:
        return attrs.start, attrs.stop - size
    return attrs.start, attrs.stop
