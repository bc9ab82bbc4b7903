"""Converters keyed by Tensor method name (fx `call_method` nodes).

A method call arrives with the tensor as its first argument, exactly like the matching torch
function, so most entries reuse the function converters.
"""

from __future__ import annotations

from typing import Any

import torch.fx

from asgnas_ir.frontends._table import ConverterTable
from asgnas_ir.frontends.torch_fx import functions as fn
from asgnas_ir.frontends.torch_fx.builder import Builder
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

METHODS = ConverterTable("torch.fx tensor methods")

# The `_` variants write their tensor in place: each lowers to its pure op and the driver points
# every later reader of the written tensor at the result (NOTE: [In-place writes as rebinding]).
METHODS.add(["add", "add_", "__add__", "__iadd__"], fn.binary(Op.ADD))
METHODS.add(["sub", "sub_", "__sub__", "__isub__"], fn.binary(Op.SUB))
METHODS.add(["mul", "mul_", "__mul__", "__imul__"], fn.binary(Op.MUL))
METHODS.add(["div", "div_", "__truediv__", "__itruediv__"], fn.binary(Op.DIV))
METHODS.add(["relu", "relu_"], fn.unary(Op.RELU, ("input",)))
METHODS.add(["sigmoid", "sigmoid_"], fn.unary(Op.SIGMOID, ("input",)))
METHODS.add(["tanh", "tanh_"], fn.unary(Op.TANH, ("input",)))
METHODS.add(["neg", "neg_"], fn.unary(Op.NEG, ("input",)))
METHODS.add(["exp", "exp_"], fn.unary(Op.EXP, ("input",)))
METHODS.add(["sqrt", "sqrt_"], fn.unary(Op.SQRT, ("input",)))
METHODS.add(["log", "log_"], fn.unary(Op.LOG, ("input",)))
METHODS.add(["pow", "pow_", "__pow__"], fn.power)
METHODS.add(["clamp", "clip", "clamp_", "clip_"], fn.FUNCTIONS.get("torch.clamp"))  # type: ignore[list-item]
METHODS.add(["softmax"], fn.softmax)
METHODS.add(["flatten"], fn.flatten)
METHODS.add(["permute"], fn.permute)
METHODS.add(["transpose", "swapaxes"], fn.transpose)
METHODS.add(["chunk"], fn.chunk)
METHODS.add(["split"], fn.split)
METHODS.add(["mean"], fn.FUNCTIONS.get("torch.mean"))  # type: ignore[list-item]
METHODS.add(["sum"], fn.FUNCTIONS.get("torch.sum"))  # type: ignore[list-item]
METHODS.add(["squeeze", "unsqueeze"], fn.squeeze)


@METHODS.register("view", "reshape")
def view(b: Builder, node: torch.fx.Node) -> Any:
    """Tensor.view(*shape) / Tensor.reshape(*shape)"""
    args, _ = b.args(node)
    shape = fn._dims(args, 1)
    x = args[0]
    if shape == b.value(x).shape:
        return x
    return b.emit(Op.RESHAPE, [x], A.ReshapeAttrs(shape=shape))


@METHODS.register("contiguous", "clone", "detach")
def alias(b: Builder, node: torch.fx.Node) -> Any:
    """Methods that return the same values: no node, the output is the input"""
    return b.args(node)[0][0]


@METHODS.register("size", "dim")
def size(b: Builder, node: torch.fx.Node) -> Any:
    """Tensor.size(dim=None) / Tensor.dim(): Python values recorded while running the model"""
    return b.observed_value(node)


@METHODS.register("to", "type_as", "float")
def cast(b: Builder, node: torch.fx.Node) -> Any:
    """Tensor.to(...) / type_as / float: supported when it changes neither dtype nor device"""
    x = b.args(node)[0][0]
    seen = b.observed_value(node)
    if getattr(seen, "dtype", None) != b.value(x).dtype:
        raise b.fail(f"Tensor.{node.target} changes the dtype to {getattr(seen, 'dtype', '?')}; dtype casts are not supported yet")
    return x
