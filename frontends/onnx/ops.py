"""Converters keyed by ONNX op type (default domain).

A key is an op type, or `(op_type, since)` for an entry that applies from opset `since` on: the
driver picks the entry with the greatest `since` not above the model's opset. Most ops read their
opset-dependent inputs through `Builder.ints` (axes, split sizes and pads moved from attributes to
inputs at opsets 10-18), so one entry serves every opset; entries split by `since` where the
meaning itself changed (Softmax's axis before opset 13).

Each converter's docstring quotes the ONNX signature it reads. A converter returns the IR value
for the node's (first) output, or a list with one entry per output. Constant operands come as
`Const` (see builder.py); nodes whose inputs are all constant never reach a converter, the driver
folds them.

The converters live in one module per op family: `ops_conv` (convolutions, pooling),
`ops_linear_norm` (MatMul/Gemm as linear layers, normalisations and their export patterns),
`ops_elementwise` (unary and binary ops, the GELU/SiLU/IsNaN patterns) and `ops_shape` (data
movement, Gather, reductions, Softmax). Importing this module imports them all, so `OPS` is
complete when `lookup` runs; the table and the shared helpers are in `_ops_common.py`.
"""

from __future__ import annotations

from typing import Any

from asgnas_ir.frontends.onnx import (  # noqa: F401  (registration: each family fills OPS)
    ops_conv,
    ops_elementwise,
    ops_linear_norm,
    ops_shape,
)
from asgnas_ir.frontends.onnx._ops_common import OPS


def lookup(op_type: str, opset: int) -> Any:
    """The converter for `op_type` at `opset` (None when there is none)."""
    best, best_since = OPS.get(op_type), 0
    for key in OPS:
        if isinstance(key, tuple) and key[0] == op_type and best_since < key[1] <= opset:
            best, best_since = OPS.get(key), key[1]
    return best
