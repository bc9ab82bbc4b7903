"""ONNX frontend converters for convolutions and pooling (the `asgnas_ir.opdefs.conv` family).

Conv and ConvTranspose with constant weights, MaxPool/AveragePool (explicit or `auto_pad` pads,
read by the `_conv_pads` helper the two share), GlobalAveragePool/GlobalMaxPool as adaptive
pools to size 1, and Resize (upsampling and downsampling of the spatial axes). Split out of `ops.py` so each file holds one op family; importing this module
registers its converters in `OPS`.
"""

from __future__ import annotations

import numpy as np
import onnx

from asgnas_ir.frontends.onnx._ops_common import OPS, _reshape_to
from asgnas_ir.frontends.onnx.builder import Builder, Const, spatial_letters
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op


def _conv_pads(b: Builder, node: onnx.NodeProto, x: str, kernel: tuple[int, ...], stride, dilation) -> A.Pads:  # noqa: ANN001
    n = len(kernel)
    auto = b.attr(node, "auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in zip(b.value(x).shape[2:], kernel, stride, dilation, strict=True):
            out = -(-size // s)
            total = max(0, (out - 1) * s + d * (k - 1) + 1 - size)
            small, big = total // 2, total - total // 2
            pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return tuple(pads)
    if auto == "VALID":
        return tuple((0, 0) for _ in range(n))
    flat = b.attr(node, "pads") or [0] * (2 * n)
    return tuple((int(flat[i]), int(flat[i + n])) for i in range(n))


@OPS.register("Conv")
def conv(b: Builder, node: onnx.NodeProto) -> str:
    """Conv(X, W, B?) kernel_shape, strides, pads, dilations, group, auto_pad"""
    x = b.tensor(node, 0)
    weight = b.const(node, 1)
    if weight is None:
        raise b.fail("a Conv weight computed at run time is not supported (the weight must be an initializer)")
    n = weight.array.ndim - 2
    kernel = tuple(int(k) for k in weight.array.shape[2:])
    stride = tuple(int(s) for s in (b.attr(node, "strides") or [1] * n))
    dilation = tuple(int(d) for d in (b.attr(node, "dilations") or [1] * n))
    attrs = A.ConvAttrs(
        stride=stride,
        padding=_conv_pads(b, node, x, kernel, stride, dilation),
        dilation=dilation,
        groups=int(b.attr(node, "group", 1)),
    )
    params = {"weight": b.param(weight, "OI" + spatial_letters(n), f"{node.name}_weight")}
    bias = b.const(node, 2)
    if bias is not None and not (bias.origin is None and not bias.array.any()):
        params["bias"] = b.param(bias, "O", f"{node.name}_bias")
    elif b.is_tensor(node, 2):
        raise b.fail("a Conv bias computed at run time is not supported")
    return b.emit(Op.CONV, [x], attrs, params)


@OPS.register("ConvTranspose")
def conv_transpose(b: Builder, node: onnx.NodeProto) -> str:
    """ConvTranspose(X, W, B?) kernel_shape, strides, pads, output_padding, dilations, group (no output_shape)"""
    x = b.tensor(node, 0)
    weight = b.const(node, 1)
    if weight is None:
        raise b.fail("a ConvTranspose weight computed at run time is not supported")
    n = weight.array.ndim - 2
    if b.attr(node, "output_shape") is not None or b.attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise b.fail("ConvTranspose with output_shape or auto_pad SAME is not supported; give explicit pads")
    flat = b.attr(node, "pads") or [0] * (2 * n)
    if any(flat[i] != flat[i + n] for i in range(n)):
        raise b.fail(f"asymmetric ConvTranspose pads {flat} are not supported")
    attrs = A.ConvTransposeAttrs(
        stride=tuple(int(s) for s in (b.attr(node, "strides") or [1] * n)),
        padding=tuple(int(p) for p in flat[:n]),
        output_padding=tuple(int(p) for p in (b.attr(node, "output_padding") or [0] * n)),
        dilation=tuple(int(d) for d in (b.attr(node, "dilations") or [1] * n)),
        groups=int(b.attr(node, "group", 1)),
    )
    params = {"weight": b.param(weight, "IO" + spatial_letters(n), f"{node.name}_weight")}
    bias = b.const(node, 2)
    if bias is not None and not (bias.origin is None and not bias.array.any()):
        params["bias"] = b.param(bias, "O", f"{node.name}_bias")
    return b.emit(Op.CONV_TRANSPOSE, [x], attrs, params)


def _pool(op: Op):  # noqa: ANN202
    def convert(b: Builder, node: onnx.NodeProto) -> str:
        if len([o for o in node.output if o]) > 1:
            raise b.fail("MaxPool's Indices output is not supported")
        x = b.tensor(node, 0)
        kernel = tuple(int(k) for k in b.attr(node, "kernel_shape"))
        n = len(kernel)
        stride = tuple(int(s) for s in (b.attr(node, "strides") or [1] * n))
        dilation = tuple(int(d) for d in (b.attr(node, "dilations") or [1] * n))
        pads = _conv_pads(b, node, x, kernel, stride, dilation)
        if any(lo != hi for lo, hi in pads):
            raise b.fail(f"asymmetric pooling pads {pads} are not supported")
        attrs = A.PoolAttrs(
            kernel_size=kernel,
            stride=stride,
            padding=tuple(lo for lo, _ in pads),
            dilation=dilation if op == Op.MAX_POOL else (),
            ceil_mode=bool(b.attr(node, "ceil_mode", 0)),
            count_include_pad=bool(b.attr(node, "count_include_pad", 0)) if op == Op.AVG_POOL else True,
        )
        return b.emit(op, [x], attrs)

    convert.__doc__ = f"{'MaxPool' if op == Op.MAX_POOL else 'AveragePool'}(X) kernel_shape, strides, pads, dilations, ceil_mode, auto_pad"
    return convert


OPS.add(["MaxPool"], _pool(Op.MAX_POOL))
OPS.add(["AveragePool"], _pool(Op.AVG_POOL))


def _global_pool(op: Op):  # noqa: ANN202
    def convert(b: Builder, node: onnx.NodeProto) -> str:
        x = b.tensor(node, 0)
        return b.emit(op, [x], A.AdaptivePoolAttrs(output_size=(1,) * (b.rank(x) - 2)))

    convert.__doc__ = f"Global pooling lowered to {op.value} with output size 1"
    return convert


OPS.add(["GlobalAveragePool"], _global_pool(Op.ADAPTIVE_AVG_POOL))
OPS.add(["GlobalMaxPool"], _global_pool(Op.ADAPTIVE_MAX_POOL))


# ---- Resize --------------------------------------------------------------------------------------
# A Resize that means what torch's F.interpolate means (what torch exports for nn.Upsample and
# F.interpolate: nearest with asymmetric coordinates and floor rounding; linear or cubic with
# pytorch_half_pixel or align_corners coordinates, cubic with a = -0.75) is the IR's `resize`, which
# generated code writes as F.interpolate. Any other is lowered exactly by matrices: every mode but
# tf_crop_and_resize is linear in X and separable by axis, so resizing one axis from n to m entries
# multiplies it by a constant n x m matrix. The matrix is read off the ONNX reference implementation
# applied to an identity, so every mode, coordinate transformation, nearest rounding, cubic
# coefficient and antialias setting means exactly what ONNX says, with no second implementation
# here. A matrix that repeats each entry k times becomes a reshape-expand-reshape (no FLOPs); any
# other one a matmul by a frozen constant (NOTE: [Folded weights are frozen]), which fixes the
# sizes of the axes it resizes.
_RESIZE_ATTRS = ("mode", "coordinate_transformation_mode", "cubic_coeff_a", "exclude_outside", "nearest_mode", "antialias")


def _resize_targets(b: Builder, node: onnx.NodeProto, rank: int) -> dict[int, tuple[str, float]]:
    """Axis -> ("scale", s) or ("size", m) for every axis the node reads a scale or size for."""
    if b.opset < 11:
        scales, sizes = b.const(node, 1), None
    else:
        scales, sizes = b.const(node, 2), b.const(node, 3)
        for index, what in ((2, "scales"), (3, "sizes")):
            if b.has_input(node, index) and b.const(node, index) is None:
                raise b.fail(f"Resize {what} must be constant (a size computed at run time is not supported)")
    axes = [int(a) % rank for a in (b.attr(node, "axes") or range(rank))]
    if sizes is not None and sizes.array.size:
        policy = b.attr(node, "keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            raise b.fail(f"Resize keep_aspect_ratio_policy '{policy}' is not supported (only 'stretch')")
        return {axis: ("size", float(v)) for axis, v in zip(axes, np.asarray(sizes.array).reshape(-1), strict=True)}
    if scales is not None and scales.array.size:
        return {axis: ("scale", float(v)) for axis, v in zip(axes, np.asarray(scales.array).reshape(-1), strict=True)}
    raise b.fail("Resize needs constant scales or sizes")


def _resize_matrix(b: Builder, node: onnx.NodeProto, size: int, target: tuple[str, float], out: int) -> np.ndarray:
    """The [size, out] matrix M with resize(v) == v @ M along one axis of `size` entries."""
    from onnx.reference import ReferenceEvaluator

    attrs = {name: b.attr(node, name) for name in _RESIZE_ATTRS if b.attr(node, name) is not None}
    if b.opset < 11:
        # Resize-10 has no coordinate attributes: it maps asymmetrically and nearest takes the floor
        # (as onnxruntime runs it), which Resize-11 says with these two
        attrs.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    kind, amount = target
    inputs = ["x", "", "scales", ""] if kind == "scale" else ["x", "", "", "sizes"]
    feeds = {"x": np.eye(size, dtype=np.float64).astype(np.float32)}
    if kind == "scale":
        feeds["scales"] = np.asarray([1.0, amount], dtype=np.float32)
    else:
        feeds["sizes"] = np.asarray([size, int(amount)], dtype=np.int64)
    probe = onnx.helper.make_node("Resize", inputs, ["y"], **attrs)
    try:
        (matrix,) = ReferenceEvaluator(probe, opsets={"": max(b.opset, 11)}).run(None, feeds)
    except Exception as exc:  # noqa: BLE001  (the reference runtime raises many types)
        raise b.fail(f"cannot evaluate this Resize's interpolation ({type(exc).__name__}: {exc})") from None
    if matrix.shape != (size, out):
        raise b.fail(f"Resize of an axis of {size} to {out} entries gives {matrix.shape[1]} in the reference implementation")
    return np.asarray(matrix)


def _resize_axis(b: Builder, node: onnx.NodeProto, x: str, axis: int, matrix: np.ndarray, last: bool) -> str:
    shape = b.value(x).shape
    size, out = matrix.shape
    base = node.output[0] if last else f"{node.output[0]}_axis{axis}"
    factor = out // size
    if out % size == 0 and np.array_equal(matrix, np.repeat(np.eye(size, dtype=matrix.dtype), factor, axis=1)):
        wide = (*shape[: axis + 1], factor, *shape[axis + 1 :])
        y = _reshape_to(b, x, (*shape[: axis + 1], 1, *shape[axis + 1 :]), name=f"{base}_split")
        y = b.emit(Op.EXPAND, [y], A.ExpandAttrs(shape=wide), name=f"{base}_repeat")
        return _reshape_to(b, y, (*shape[:axis], out, *shape[axis + 1 :]), name=base)
    rank = len(shape)
    dtype = b.value(x).dtype
    if axis == rank - 1:
        weight = b.constant_node(Const(matrix.astype(dtype)), f"{base}_matrix")
        return b.emit(Op.MATMUL, [x, weight], name=base)
    if axis == rank - 2:
        weight = b.constant_node(Const(np.ascontiguousarray(matrix.T).astype(dtype)), f"{base}_matrix")
        return b.emit(Op.MATMUL, [weight, x], name=base)
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    moved = b.emit(Op.PERMUTE, [x], A.PermuteAttrs(perm=tuple(perm)), name=f"{base}_moved")
    weight = b.constant_node(Const(matrix.astype(dtype)), f"{base}_matrix")
    y = b.emit(Op.MATMUL, [moved, weight], name=f"{base}_resized")
    return b.emit(Op.PERMUTE, [y], A.PermuteAttrs(perm=tuple(perm)), name=base)


# spatial axes torch's F.interpolate has each mode for (generated code calls it)
_INTERPOLATE_RANKS = {"nearest": (1, 2, 3), "linear": (1, 2, 3), "cubic": (2,)}


def _as_interpolate(
    b: Builder, node: onnx.NodeProto, x: str, targets: dict[int, tuple[str, float]], out_shape: tuple[int, ...], changed: list[int],
) -> A.ResizeAttrs | None:
    """The IR `resize` equal to this Resize, when it is one torch's F.interpolate computes; else None."""
    value = b.value(x)
    mode = b.attr(node, "mode", "nearest")
    ctm = b.attr(node, "coordinate_transformation_mode", "half_pixel") if b.opset >= 11 else "asymmetric"
    rounding = b.attr(node, "nearest_mode", "round_prefer_floor") if b.opset >= 11 else "floor"
    spatial = list(range(2, len(value.shape)))
    if not changed or len(spatial) not in _INTERPOLATE_RANKS.get(mode, ()) or b.attr(node, "antialias", 0):
        return None
    sizes = tuple(out_shape[a] for a in spatial)
    if mode == "nearest":
        if ctm != "asymmetric" or rounding != "floor":
            return None
        corners = False
    else:
        if mode == "cubic" and (b.attr(node, "cubic_coeff_a", -0.75) != -0.75 or b.attr(node, "exclude_outside", 0)):
            return None
        # half_pixel and torch's pytorch_half_pixel differ only for an output axis of one entry
        if not (ctm == "pytorch_half_pixel" or ctm == "align_corners" or (ctm == "half_pixel" and min(sizes) > 1)):
            return None
        corners = ctm == "align_corners"
    scale = None
    if any(kind == "scale" for kind, _ in targets.values()):
        scale = tuple(targets.get(a, ("scale", 1.0))[1] for a in spatial)
        if [int(value.shape[a] * s) for a, s in zip(spatial, scale, strict=True)] != list(sizes):
            return None  # the float32 scale rounds to another size than ONNX computed
    return A.ResizeAttrs(axes=tuple(spatial), mode=mode, size=sizes, scale=scale, align_corners=corners)


@OPS.register("Resize")
def resize(b: Builder, node: onnx.NodeProto) -> str:
    """Resize(X, roi?, scales?, sizes?) mode, coordinate_transformation_mode, nearest_mode, cubic_coeff_a,
    exclude_outside, antialias, axes, keep_aspect_ratio_policy (opset 10: Resize(X, scales) mode):
    the IR's resize where torch's F.interpolate computes the same, else one constant interpolation
    matrix per resized spatial axis"""
    if b.attr(node, "coordinate_transformation_mode") == "tf_crop_and_resize":
        raise b.fail("Resize with coordinate_transformation_mode 'tf_crop_and_resize' is not supported")
    x = b.tensor(node, 0)
    shape, out_shape = b.value(x).shape, b.out_shape(node)
    rank = len(shape)
    targets = _resize_targets(b, node, rank)
    # an axis with scale 1 or its own size is untouched; a scale other than 1 that rounds back to
    # the same size still moves the sampling points, so that axis is resampled
    changed = [a for a in range(rank) if a in targets and (shape[a] != out_shape[a] or targets[a] not in (("scale", 1.0), ("size", float(shape[a]))))]
    if any(a < 2 for a in changed):
        raise b.fail(f"Resize of the batch or channel axis ({list(shape)} to {list(out_shape)}) is not supported")
    attrs = _as_interpolate(b, node, x, targets, out_shape, changed)
    if attrs is not None:
        return b.emit(Op.RESIZE, [x], attrs)
    y = x
    for i, axis in enumerate(changed):
        matrix = _resize_matrix(b, node, shape[axis], targets[axis], out_shape[axis])
        if shape[axis] == out_shape[axis] and np.array_equal(matrix, np.eye(shape[axis], dtype=matrix.dtype)):
            continue
        y = _resize_axis(b, node, y, axis, matrix, last=i == len(changed) - 1)
    return y
