"""codegen-keras emitters for resampling, running sums and the max reduction (`asgnas_ir.opdefs.resample`).

Keras resizes channels-last images through `tf.image.resize`-style kernels with half-pixel centres.
That agrees with torch's nearest rule (floor of dst / scale) exactly when every spatial axis grows
by a whole factor, and with torch's bilinear rule (align_corners=False, no antialiasing) for any
size; torch's bicubic (a = -0.75) and align_corners=True have no Keras counterpart and are refused
rather than written approximately.
"""

from __future__ import annotations

from asgnas_ir.errors import CodegenError
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.passes.codegen._keras_printer import KerasPrinter, emits
from asgnas_ir.passes.codegen._layout import inverse
from asgnas_ir.passes.codegen._printer import lit, lit_exact


@emits(Op.MAX)
def _max(p: KerasPrinter, node: NodeBase) -> None:
    attrs: A.ReduceAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    perm = p.perm[value]
    axes = tuple(sorted(inverse(perm)[a] for a in attrs.axes))
    axis = str(axes[0]) if len(axes) == 1 else lit_exact(axes)
    keep = ", keepdims=True" if attrs.keepdim else ""
    kept = [a for a in perm if a not in attrs.axes]
    out_perm = perm if attrs.keepdim else tuple(sorted(kept).index(a) for a in kept)
    p.assign(node, f"keras.ops.max({p.x(node)}, axis={axis}{keep})", out_perm)


@emits(Op.CUMSUM)
def _cumsum(p: KerasPrinter, node: NodeBase) -> None:
    value = node.inputs[0]
    axis = inverse(p.perm[value])[node.attrs.axis]  # type: ignore[attr-defined]
    p.assign(node, f"keras.ops.cumsum({p.x(node)}, axis={axis})", p.perm[value])


def _refuse(node: NodeBase, why: str) -> CodegenError:
    return CodegenError(f"node '{node.id}' (resize, from '{node.source}'): {why}; Keras has no resize that matches it exactly")


@emits(Op.RESIZE)
def _resize(p: KerasPrinter, node: NodeBase) -> None:
    attrs: A.ResizeAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    rank = p.rank(value)
    rest = [a for a in range(1, rank) if a not in attrs.axes]
    if len(rest) != 1:
        raise _refuse(node, f"a resize of axes {attrs.axes} of a rank-{rank} value")
    perm = (0, *attrs.axes, rest[0])  # channels last, the resized axes between
    spatial_in = [p.shape(value)[a] for a in attrs.axes]
    spatial_out = list(attrs.size)
    n = len(spatial_in)
    x = p.view(value, perm)
    if attrs.align_corners:
        raise _refuse(node, "align_corners=True")
    if attrs.mode == "nearest":
        factors = [o // i for i, o in zip(spatial_in, spatial_out, strict=True)]
        if any(o != i * f for i, o, f in zip(spatial_in, spatial_out, factors, strict=True)) or not 1 <= n <= 3:
            raise _refuse(node, f"nearest resize from {spatial_in} to {spatial_out} is not a whole-factor upsampling")
        layer = p.layer(node, f"UpSampling{n}D", lit(tuple(factors)) if n > 1 else str(factors[0]))
        p.assign(node, f"{layer}({x})", perm)
        return
    if attrs.mode == "linear" and n == 2:
        p.assign(node, f'keras.ops.image.resize({x}, {lit_exact(tuple(spatial_out))}, interpolation="bilinear")', perm)
        return
    raise _refuse(node, f"{attrs.mode} interpolation over {n} axes")
