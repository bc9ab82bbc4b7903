"""Keras dtype policies (mixed precision) in the IR: explicit casts where Keras rounds.

A Keras layer has a variable dtype and a compute dtype (`mixed_float16`: float32 variables, float16
arithmetic). Its `__call__` casts every floating input to the compute dtype, reads its variables
cast to it, and returns values in it; a layer whose policy is float32 (the usual output layer of a
mixed model) casts float16 inputs back up. A functional `keras.ops` call is no layer and casts
nothing: mixed operands promote (float16 + float32 is float32).

The IR says the same without a new notion of "policy": every value has the dtype Keras computes it
in, params keep their variable dtype, and a `cast` node stands wherever Keras rounds a value to
another float dtype (a layer's input autocast, a non-layer op's promotion, a layer returning
another dtype than its converter's ops produce). A node whose params' dtype differs from its
operands' computes with the params rounded to the operands' dtype, which is what Keras' autocast
variables do; codegen reads a node's policy back from those two dtypes (`mixed_float16` when the
params are float32 and the values float16). Keeping the rounding as nodes, not as a per-layer
attribute, keeps shape inference, verify and every pass dtype-exact with no policy knowledge.

`cast_inputs` runs before a layer's converter and `cast_outputs` after it (frontends/keras/driver.py).
"""

from __future__ import annotations

from typing import Any

import keras

from asgnas_ir.frontends.keras.builder import Builder, dtype_name
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

_FLOATS = ("float16", "bfloat16", "float32", "float64")


def _floating(dtype: str) -> bool:
    return dtype in _FLOATS


def _target_dtype(b: Builder, op: Any, names: list[str]) -> str | None:
    """The dtype `op` computes its floating inputs in, or None when it casts none of them."""
    if isinstance(op, keras.layers.Layer):
        if not getattr(op, "autocast", True) or not getattr(op, "_convert_input_args", True):
            return None
        compute = dtype_name(op.compute_dtype)
        return compute if _floating(compute) else None
    dtypes = [b.values[n].dtype for n in names if _floating(b.values[n].dtype)]
    if len(set(dtypes)) < 2:
        return None
    return dtype_name(keras.backend.result_type(*dtypes))  # a functional op promotes mixed operands


def cast_inputs(b: Builder, op: Any, names: list[str]) -> dict[str, str]:
    """Cast nodes for the floating inputs `op` rounds on entry; returns input name -> cast value name."""
    target = _target_dtype(b, op, names)
    renamed: dict[str, str] = {}
    if target is None:
        return renamed
    for name in dict.fromkeys(names):
        dtype = b.values[name].dtype
        if _floating(dtype) and dtype != target:
            renamed[name] = b.emit(Op.CAST, [name], A.CastAttrs(dtype=target), name=f"{b.source or 'op'}_to_{target}")
    return renamed


def cast_outputs(b: Builder, results: list[str], tensors: list[Any]) -> list[str]:
    """`results` in the dtypes Keras gives `tensors` (a cast node where a converter's ops ended in another
    floating dtype, e.g. a float32 policy layer fed float16 values inside)."""
    out = []
    for name, tensor in zip(results, tensors, strict=True):
        want = dtype_name(tensor.dtype)
        have = b.values[name].dtype
        if have != want and _floating(have) and _floating(want):
            name = b.emit(Op.CAST, [name], A.CastAttrs(dtype=want), name=f"{b.source or 'op'}_as_{want}")
        out.append(name)
    return out
