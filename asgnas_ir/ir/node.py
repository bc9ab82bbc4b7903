"""Nodes: one pydantic model per op kind, joined as a tagged union on `op`.

A node refers to values and params by name, never by Python object, so the JSON *is* the graph.
The per-op node classes are generated from `OP_ATTRS` (op → attribute model): the `op` field is a
literal, so pydantic validates `attrs` against the right model and names the failing variant.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

OP_ATTRS: dict[Op, type[A.Attrs]] = {
    Op.CONV: A.ConvAttrs,
    Op.CONV_TRANSPOSE: A.ConvTransposeAttrs,
    Op.LINEAR: A.NoAttrs,
    Op.EMBEDDING: A.EmbeddingAttrs,
    Op.BATCH_NORM: A.BatchNormAttrs,
    Op.LAYER_NORM: A.LayerNormAttrs,
    Op.GROUP_NORM: A.GroupNormAttrs,
    Op.INSTANCE_NORM: A.InstanceNormAttrs,
    Op.RELU: A.NoAttrs,
    Op.LEAKY_RELU: A.LeakyReluAttrs,
    Op.CLAMP: A.ClampAttrs,
    Op.GELU: A.GeluAttrs,
    Op.SILU: A.NoAttrs,
    Op.SIGMOID: A.NoAttrs,
    Op.TANH: A.NoAttrs,
    Op.HARDSWISH: A.NoAttrs,
    Op.HARDSIGMOID: A.NoAttrs,
    Op.ELU: A.EluAttrs,
    Op.SOFTPLUS: A.SoftplusAttrs,
    Op.MISH: A.NoAttrs,
    Op.NEG: A.NoAttrs,
    Op.EXP: A.NoAttrs,
    Op.SQRT: A.NoAttrs,
    Op.LOG: A.NoAttrs,
    Op.SIN: A.NoAttrs,
    Op.COS: A.NoAttrs,
    Op.POW: A.PowAttrs,
    Op.IDENTITY: A.NoAttrs,
    Op.DROPOUT: A.DropoutAttrs,
    Op.CAST: A.CastAttrs,
    Op.ADD: A.BinaryAttrs,
    Op.SUB: A.BinaryAttrs,
    Op.MUL: A.BinaryAttrs,
    Op.DIV: A.BinaryAttrs,
    Op.CONCAT: A.AxisAttrs,
    Op.SPLIT: A.SplitAttrs,
    Op.SLICE: A.SliceAttrs,
    Op.RESHAPE: A.ReshapeAttrs,
    Op.FLATTEN: A.FlattenAttrs,
    Op.PERMUTE: A.PermuteAttrs,
    Op.PAD: A.PadAttrs,
    Op.EXPAND: A.ExpandAttrs,
    Op.MAX_POOL: A.PoolAttrs,
    Op.AVG_POOL: A.PoolAttrs,
    Op.ADAPTIVE_AVG_POOL: A.AdaptivePoolAttrs,
    Op.ADAPTIVE_MAX_POOL: A.AdaptivePoolAttrs,
    Op.MEAN: A.ReduceAttrs,
    Op.SUM: A.ReduceAttrs,
    Op.MAX: A.ReduceAttrs,
    Op.SOFTMAX: A.AxisAttrs,
    Op.CUMSUM: A.CumsumAttrs,
    Op.RESIZE: A.ResizeAttrs,
    Op.MATMUL: A.NoAttrs,
    Op.ATTENTION: A.AttentionAttrs,
    Op.CONSTANT: A.NoAttrs,
    Op.OPAQUE: A.OpaqueAttrs,
}


class NodeBase(BaseModel):
    """Fields shared by every node.

    Invariants (checked by the `verify` pass): `id` is unique in the graph; every name in `inputs`
    is a graph input or an output of an earlier node; `outputs` are defined nowhere else; every
    param name in `params` exists in `Graph.params`.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    op: Op
    inputs: list[str] = Field(default_factory=list)
    outputs: list[str]
    params: dict[str, str] = Field(default_factory=dict)
    attrs: A.Attrs = Field(default_factory=A.NoAttrs)
    source: str = ""


def _node_class(op: Op, attrs_model: type[A.Attrs]) -> type[NodeBase]:
    name = "".join(part.capitalize() for part in op.value.split("_")) + "Node"
    default: Any = ... if attrs_model.model_fields and any(
        f.is_required() for f in attrs_model.model_fields.values()
    ) else attrs_model()
    return create_model(  # type: ignore[call-overload]
        name,
        __base__=NodeBase,
        op=(Literal[op], op),
        attrs=(attrs_model, default),
    )


NODE_CLASSES: dict[Op, type[NodeBase]] = {op: _node_class(op, model) for op, model in OP_ATTRS.items()}

AnyNode = Annotated[Union[tuple(NODE_CLASSES.values())], Field(discriminator="op")]  # noqa: UP007


def make_node(
    op: Op,
    id: str,
    inputs: list[str],
    outputs: list[str],
    *,
    attrs: A.Attrs | None = None,
    params: dict[str, str] | None = None,
    source: str = "",
) -> NodeBase:
    """Build a node of the right class for `op` (the one constructor frontends and passes use)."""
    cls = NODE_CLASSES[op]
    kwargs: dict[str, Any] = {"id": id, "inputs": inputs, "outputs": outputs, "source": source}
    if attrs is not None:
        kwargs["attrs"] = attrs
    if params:
        kwargs["params"] = params
    return cls(**kwargs)
