"""codegen-keras emitters for linear layers and normalisations (the `asgnas_ir.opdefs.linear_norm` family).

Linear as Dense on the last axis (any rank); batch norm as BatchNormalization over the channel axis
in whatever layout the value is held (or, without running statistics, this batch's moments);
group norm as GroupNormalization; instance norm as GroupNormalization with one group per channel
(BatchNormalization when it tracks running statistics); layer norm as LayerNormalization over the
trailing axes.
"""

from __future__ import annotations

from asgnas_ir.errors import CodegenError
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.passes.codegen._keras_printer import KerasPrinter, emits, identity
from asgnas_ir.passes.codegen._printer import lit, lit_exact


@emits(Op.LINEAR)
def _linear(p: KerasPrinter, node: NodeBase) -> None:
    """Dense(units): kernel [in, out]; the input's last axis must be its logical last axis."""
    value = node.inputs[0]
    rank = p.rank(value)
    perm = p.perm[value]
    if perm[-1] != rank - 1:
        perm = identity(rank)
    weight = p.array(node, "weight", "IO")
    weights = {"kernel": weight}
    if "bias" in node.params:
        weights["bias"] = p.array(node, "bias")
    layer = p.layer(node, "Dense", str(weight.shape[1]), use_bias="True" if "bias" in node.params else "False", weights=weights)
    p.assign(node, f"{layer}({p.view(value, perm)})", perm)


def _affine(p: KerasPrinter, node: NodeBase) -> dict[str, str]:
    return {
        "center": None if "bias" in node.params else "False",
        "scale": None if "weight" in node.params else "False",
    }


def _affine_weights(p: KerasPrinter, node: NodeBase) -> dict:
    weights = {}
    if "weight" in node.params:
        weights["gamma"] = p.array(node, "weight")
    if "bias" in node.params:
        weights["beta"] = p.array(node, "bias")
    return weights


def _batch_norm_layer(p: KerasPrinter, node: NodeBase, eps: float, momentum: float | None) -> None:
    value = node.inputs[0]
    weights = _affine_weights(p, node)
    weights["moving_mean"] = p.array(node, "running_mean")
    weights["moving_variance"] = p.array(node, "running_var")
    layer = p.layer(
        node, "BatchNormalization", axis=str(p.channel_axis(value)),
        momentum=None if momentum is None or momentum == 0.01 else lit(1.0 - momentum),
        epsilon=lit(float(eps)), **_affine(p, node), weights=weights,
    )
    p.assign(node, f"{layer}({p.x(node)})", p.perm[value])


def _batch_stats_norm(p: KerasPrinter, node: NodeBase, eps: float) -> None:
    """(x - mean) / sqrt(var + eps) * weight + bias with this batch's statistics per channel."""
    value = node.inputs[0]
    rank = p.rank(value)
    axis = p.channel_axis(value)
    reduce = tuple(a for a in range(rank) if a != axis)
    x = p.x(node)
    moments = p.line(node, "moments", f"keras.ops.moments({x}, axes={lit_exact(reduce)}, keepdims=True)")
    normed = f"({x} - {moments}[0]) / keras.ops.sqrt({moments}[1] + {lit(float(eps))})"
    shape = [1] * rank
    shape[axis] = p.shape(value)[p.perm[value][axis]]
    for role in ("weight", "bias"):
        if role in node.params:
            array = p.array(node, role).reshape(shape)
            const = p.constant(("norm", node.id, role), f"{p.layer_name(node)}_{role}", array, trainable=True)
            normed = f"{normed} * {const}" if role == "weight" else f"{normed} + {const}"
    p.assign(node, normed, p.perm[value])


@emits(Op.BATCH_NORM)
def _batch_norm(p: KerasPrinter, node: NodeBase) -> None:
    attrs: A.BatchNormAttrs = node.attrs  # type: ignore[assignment]
    if "running_mean" in node.params:
        _batch_norm_layer(p, node, attrs.eps, attrs.momentum)
    else:  # track_running_stats=False: torch normalises with the batch's own statistics
        _batch_stats_norm(p, node, attrs.eps)


@emits(Op.INSTANCE_NORM)
def _instance_norm(p: KerasPrinter, node: NodeBase) -> None:
    attrs: A.InstanceNormAttrs = node.attrs  # type: ignore[assignment]
    if "running_mean" in node.params:  # track_running_stats=True: eval mode uses the running statistics
        _batch_norm_layer(p, node, attrs.eps, attrs.momentum)
        return
    value = node.inputs[0]
    axis = p.channel_axis(value)
    channels = p.shape(value)[p.perm[value][axis]]
    layer = p.layer(
        node, "GroupNormalization", groups=str(channels), axis=str(axis), epsilon=lit(float(attrs.eps)),
        **_affine(p, node), weights=_affine_weights(p, node),
    ) if node.params else p.helper_layer(
        node, "", "GroupNormalization", groups=str(channels), axis=str(axis), epsilon=lit(float(attrs.eps)),
        center="False", scale="False",
    )
    p.assign(node, f"{layer}({p.x(node)})", p.perm[value])


@emits(Op.GROUP_NORM)
def _group_norm(p: KerasPrinter, node: NodeBase) -> None:
    attrs: A.GroupNormAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    kwargs = {"groups": str(attrs.num_groups), "axis": str(p.channel_axis(value)), "epsilon": lit(float(attrs.eps))}
    if node.params:
        layer = p.layer(node, "GroupNormalization", **kwargs, **_affine(p, node), weights=_affine_weights(p, node))
    else:
        layer = p.helper_layer(node, "", "GroupNormalization", **kwargs, center="False", scale="False")
    p.assign(node, f"{layer}({p.x(node)})", p.perm[value])


@emits(Op.LAYER_NORM)
def _layer_norm(p: KerasPrinter, node: NodeBase) -> None:
    attrs: A.LayerNormAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    rank = p.rank(value)
    if tuple(attrs.axes) != tuple(range(rank - len(attrs.axes), rank)):
        raise CodegenError(f"node '{node.id}' (layer_norm, from '{node.source}') normalises axes {attrs.axes}, not the trailing ones")
    perm = p.perm[value]
    if tuple(perm[rank - len(attrs.axes):]) != tuple(attrs.axes):  # the normalised axes must trail in order
        perm = identity(rank)
    axis = "-1" if len(attrs.axes) == 1 else lit_exact(tuple(attrs.axes))
    kwargs = {"axis": axis, "epsilon": lit(float(attrs.eps))}
    if node.params:
        layer = p.layer(node, "LayerNormalization", **kwargs, **_affine(p, node), weights=_affine_weights(p, node))
    else:
        layer = p.helper_layer(node, "", "LayerNormalization", **kwargs, center="False", scale="False")
    p.assign(node, f"{layer}({p.view(value, perm)})", perm)
