"""The `OPS` converter table of the ONNX frontend and the small helpers every converter family shares.

`OPS` is filled by the family modules (`ops_conv`, `ops_linear_norm`, `ops_elementwise`,
`ops_shape`), each registering its converters at import; `ops.py` imports them all and looks
entries up. The table and the helpers (`_axis`, `_scalar`, `_reshape_to`) live here, apart from
`ops.py`, so that the families can import them without importing `ops.py`, which imports the
families: the import graph stays acyclic, as with `asgnas_ir.opdefs._opdef`.
"""

from __future__ import annotations

import numpy as np

from asgnas_ir.frontends._table import ConverterTable
from asgnas_ir.frontends.onnx.builder import Builder, Const
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

OPS = ConverterTable("onnx ops")


def _axis(b: Builder, x: str, axis: int) -> int:
    return int(axis) % b.rank(x)


def _scalar(const: Const | None) -> float | None:
    if const is None or const.array.size != 1:
        return None
    return float(np.asarray(const.array).reshape(-1)[0])


def _reshape_to(b: Builder, x: str, shape: tuple[int, ...], name: str | None = None) -> str:
    if b.value(x).shape == tuple(shape):
        return x
    return b.emit(Op.RESHAPE, [x], A.ReshapeAttrs(shape=tuple(shape)), name=name)
