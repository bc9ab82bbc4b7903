"""Shared pieces of the code printers: literal formatting and the GeneratedCode value object.

Printing and writing are separate steps: a printer returns `GeneratedCode` (source text plus the
arrays for the weights file) and `write` puts them on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asgnas_ir.ir.graph import contiguous


def lit(value: object) -> str:
    """A Python literal for an attribute value: tuples whose entries agree collapse to one int."""
    if isinstance(value, tuple) and value and all(v == value[0] for v in value) and not isinstance(value[0], tuple):
        return lit(value[0])
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (tuple, list)):
        inner = ", ".join(lit_exact(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def _float(value: float) -> str:
    """repr, except for the values whose repr is no Python literal (`inf`, `nan`): a max pool's -inf pad."""
    if value != value or value in (float("inf"), float("-inf")):
        return f'float("{value}")'
    return repr(float(value))


def lit_exact(value: object) -> str:
    """Like `lit` but never collapses a tuple (for shapes and permutations)."""
    if isinstance(value, (tuple, list)):
        inner = ", ".join(lit_exact(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return lit(value)


def wrap(line: str, indent: str, width: int = 119) -> list[str]:
    """`line` (a statement ending in a call) as one line when it fits, else its arguments on one
    continuation line, else one argument per line.

    Only the outermost call is split, at commas outside brackets and strings, so long local names
    (attention heads of deep models) stay readable and within the line length generated code promises.
    """
    if len(indent) + len(line) <= width or not line.endswith(")") or "(" not in line:
        return [indent + line]
    depth, quote, opened, parts, start = 0, "", -1, [], 0
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            if depth == 0 and ch == "(" and opened < 0:
                opened, start = i, i + 1
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 1 and opened >= 0:
            parts.append(line[start:i].strip())
            start = i + 1
    if opened < 0 or depth != 0:
        return [indent + line]
    parts = [part for part in [*parts, line[start:-1].strip()] if part]
    together = f"{indent}    {', '.join(parts)}"
    if len(together) <= width:
        return [indent + line[: opened + 1], together, indent + ")"]
    return [indent + line[: opened + 1], *(f"{indent}    {part}," for part in parts), indent + ")"]


def registrar(table: dict[Any, Any], target: str) -> Callable[..., Callable[[Any], Any]]:
    """The `@emits(Op.X, ...)` decorator of one codegen target: fills `table`, once per op."""

    def emits(*ops: Any) -> Callable[[Any], Any]:
        def add(fn: Any) -> Any:
            for op in ops:
                if op in table:
                    raise RuntimeError(f"{target} emitter for '{op.value}' registered twice")
                table[op] = fn
            return fn

        return add

    return emits


def call(func: str, *args: str, **kwargs: str | None) -> str:
    parts = list(args) + [f"{k}={v}" for k, v in kwargs.items() if v is not None]
    return f"{func}({', '.join(parts)})"


@dataclass
class GeneratedCode:
    """Source files by name and the weights to save beside them."""

    files: dict[str, str]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    weights_file: str = "weights.safetensors"
    always_write_weights: bool = False  # write the (possibly empty) weights file even without weights

    def write(self, out_dir: str | Path) -> list[Path]:
        from safetensors.numpy import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in self.files.items():
            path = out / name
            path.write_text(text)
            written.append(path)
        if self.weights or self.always_write_weights:
            path = out / self.weights_file
            save_file({k: contiguous(v) for k, v in self.weights.items()}, str(path))
            written.append(path)
        return written


def formatted(source: str, file_name: str) -> str:
    """`source` as `ruff format` writes it with its default settings, so generated files pass
    `ruff format --check` in the user's project as they stand. ruff is a dependency; were its
    binary missing or the run to fail, the text stays as printed (valid, only formatted by us)."""
    import subprocess

    try:
        from ruff.__main__ import find_ruff_bin

        done = subprocess.run(
            [str(find_ruff_bin()), "format", "--isolated", "--stdin-filename", file_name, "-"],
            input=source, capture_output=True, text=True, timeout=60, check=False,
        )
    except (ImportError, OSError, subprocess.SubprocessError):
        return source
    return done.stdout if done.returncode == 0 and done.stdout else source
