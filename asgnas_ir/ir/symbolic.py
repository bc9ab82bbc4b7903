"""Symbolic dimensions (DESIGN §2): a dim that is not a number but an expression in the graph's symbols.

The symbols are `N` (the batch: axis 0 of every graph input) and `S` (the sequence length: axis 1
of integer token inputs). A value's dim is written as a small polynomial in them with integer
coefficients, as the graphs of real models need it: `N`, `64*N` (a batch folded with 64 windows),
`S+1` (a class token prepended), `N*S` (tokens flattened across the batch), `N*S*12`.

NOTE: [Concrete shapes stay] `Value.shape` keeps the example's sizes and every analysis pass
reasons about those (cost is "at the example's sizes"; equal names have equal sizes there by
construction). `Value.dims` adds, per axis, the expression the size follows when the batch or the
sequence length changes; codegen reads it so that no symbolic size is ever written as a literal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

SYMBOLS = ("N", "S")
BATCH, SEQUENCE = SYMBOLS

# A monomial is the sorted tuple of the symbols it multiplies: () for the constant term.
Monomial = tuple[str, ...]
_TERM = re.compile(r"^(?:(\d+)\*)?([A-Z](?:\*[A-Z])*)$|^(\d+)$")


def parse(expr: str) -> dict[Monomial, int]:
    """`"64*N+1"` → {("N",): 64, (): 1}. Raises ValueError on anything else."""
    terms: dict[Monomial, int] = {}
    for raw in expr.replace(" ", "").replace("-", "+-").split("+"):
        if not raw:
            continue
        sign = -1 if raw.startswith("-") else 1
        match = _TERM.match(raw.lstrip("-"))
        if match is None:
            raise ValueError(f"'{expr}' is not a symbolic dim (integer polynomial in {', '.join(SYMBOLS)})")
        coefficient, symbols, constant = match.groups()
        if constant is not None:
            terms[()] = terms.get((), 0) + sign * int(constant)
            continue
        monomial = tuple(sorted(symbols.split("*")))
        unknown = set(monomial) - set(SYMBOLS)
        if unknown:
            raise ValueError(f"'{expr}' names unknown symbol(s) {sorted(unknown)}; the symbols are {', '.join(SYMBOLS)}")
        terms[monomial] = terms.get(monomial, 0) + sign * int(coefficient if coefficient is not None else 1)
    return {m: c for m, c in terms.items() if c}


def format_terms(terms: Mapping[Monomial, int]) -> str:
    """The canonical text: symbolic terms first (`N`, `64*N`, `N*S`), the constant last (`S+1`)."""
    parts: list[str] = []
    for monomial in sorted((m for m in terms if m), key=lambda m: (len(m), m)):
        coefficient = terms[monomial]
        name = "*".join(monomial)
        parts.append(name if coefficient == 1 else f"-{name}" if coefficient == -1 else f"{coefficient}*{name}")
    if terms.get(()):
        parts.append(str(terms[()]))
    text = "+".join(parts).replace("+-", "-")
    return text or "0"


def evaluate(dim: int | str, sizes: Mapping[str, int]) -> int:
    """The size `dim` has when the symbols take `sizes`."""
    if isinstance(dim, int):
        return dim
    total = 0
    for monomial, coefficient in parse(dim).items():
        product = coefficient
        for symbol in monomial:
            product *= sizes[symbol]
        total += product
    return total


def symbols_of(dim: int | str) -> frozenset[str]:
    return frozenset() if isinstance(dim, int) else frozenset(s for m in parse(dim) for s in m)


def fit(samples: Mapping[tuple[int, ...], int], symbols: tuple[str, ...]) -> int | str | None:
    """The dim through the observed `samples` (symbol sizes → size), or None when no expression fits.

    A dim seen at one size everywhere is that int. Otherwise the unknowns are the coefficients of
    the monomials the varied symbols allow (1, N, S, N*S), from one sample per symbol varied on its
    own (the frontends vary one at a time from a base). Three samples cannot tell `k*N*S` from the
    sum `k*s*N + k*b*S - k*b*s`, which both fit them; a size that moves with the batch and the
    sequence together is a flattened token axis in every model we know, so the product wins.
    """
    sizes = set(samples.values())
    if len(sizes) == 1:
        return sizes.pop()
    base = next(iter(samples))
    terms: dict[Monomial, float] = {}
    # one symbol varied at a time: the slope along each symbol
    slopes: dict[str, float] = {}
    for point, size in samples.items():
        moved = [i for i, (a, b) in enumerate(zip(point, base, strict=True)) if a != b]
        if len(moved) == 1:
            i = moved[0]
            slopes[symbols[i]] = (size - samples[base]) / (point[i] - base[i])
    for candidate in (_cross(base, samples[base], slopes, symbols), _linear(base, samples[base], slopes, symbols)):
        if candidate is None:
            continue
        terms = candidate
        if all(evaluate(format_terms(terms), dict(zip(symbols, p, strict=True))) == s for p, s in samples.items()):
            return format_terms(terms)
    return None


def _linear(base: tuple[int, ...], size: int, slopes: Mapping[str, float], symbols: tuple[str, ...]) -> dict[Monomial, int] | None:
    if any(s != int(s) for s in slopes.values()):
        return None
    terms: dict[Monomial, int] = {(sym,): int(slope) for sym, slope in slopes.items() if slope}
    constant = size - sum(int(slopes.get(sym, 0)) * value for sym, value in zip(symbols, base, strict=True))
    if constant:
        terms[()] = constant
    return terms


def _cross(base: tuple[int, ...], size: int, slopes: Mapping[str, float], symbols: tuple[str, ...]) -> dict[Monomial, int] | None:
    """k*N*S (a product of every varied symbol), the form flattened token tensors take."""
    varied = [sym for sym in symbols if sym in slopes and slopes[sym]]
    if len(varied) < 2:
        return None
    product = 1
    for sym, value in zip(symbols, base, strict=True):
        if sym in varied:
            product *= value
    if size % product:
        return None
    return {tuple(sorted(varied)): size // product}
