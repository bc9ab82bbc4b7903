"""codegen-keras emitters for convolutions and pooling (the `asgnas_ir.opdefs.conv` family).

Conv{1,2,3}D (grouped through `groups`), DepthwiseConv{1,2}D for depthwise convs, Conv{n}DTranspose
followed by a Cropping layer for torch's padding. Explicit paddings become a ZeroPadding layer (or
`keras.ops.pad` for reflect, a concatenate of edge rows for replicate and circular, and -inf for max
pools) before a 'valid' layer, so asymmetric pads are exact. A stride and a dilation both above 1
(refused by Keras) run at stride 1 and keep every stride-th output. Weights a layer already holds
under other settings go through `keras.ops.conv` on its variables. Pools: ceil mode as extra end
padding; an average pool whose divisor is not its window size (count_include_pad=False with
padding, or a ceil overhang) is multiplied by a constant correction.
Adaptive pools: global pools for output 1, else the regular pool with the same windows, else refused.
"""

from __future__ import annotations

import numpy as np

from asgnas_ir.errors import CodegenError
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.passes.codegen._keras_printer import KerasPrinter, emits, float_lit
from asgnas_ir.passes.codegen._printer import call, lit, lit_exact
from asgnas_ir.passes.codegen.onnx_emitters_conv import adaptive_window


def _spatial_letters(axes: str | None, n: int) -> str:
    letters = [c for c in (axes or "") if c not in "OI"]
    return "".join(letters) if len(letters) == n else "DHW"[-n:] if n <= 3 else "".join(chr(65 + i) for i in range(n))


def _pairs(pairs: list[tuple[int, int]]) -> str:
    """ZeroPadding/Cropping argument: (a, b) for 1-d, ((a, b), (c, d)) otherwise."""
    if len(pairs) == 1:
        return lit_exact(pairs[0])
    return lit_exact(tuple(tuple(p) for p in pairs))


def _pad_spatial(p: KerasPrinter, node: NodeBase, x: str, pairs: list[tuple[int, int]], mode: str = "zeros",
                 value: float = 0.0) -> str:
    """`x` (channels-last) padded on its spatial axes; returns the new expression."""
    if not any(a or b for a, b in pairs):
        return x
    n = len(pairs)
    if mode == "zeros" and value == 0.0:
        layer = p.helper_layer(node, "pad", f"ZeroPadding{n}D", padding=_pairs(pairs))
        return p.line(node, "padded", f"{layer}({x})")
    width = lit_exact(((0, 0), *pairs, (0, 0)))
    if mode == "zeros":
        return p.line(node, "padded", f"keras.ops.pad({x}, {width}, constant_values={float_lit(value)})")
    if mode == "reflect":
        return p.line(node, "padded", f'keras.ops.pad({x}, {width}, mode="reflect")')
    if mode == "replicate" and all(a <= 1 and b <= 1 for a, b in pairs):  # one row of edge == symmetric
        return p.line(node, "padded", f'keras.ops.pad({x}, {width}, mode="symmetric")')
    if mode in ("replicate", "circular"):
        return edge_pad(p, node, x, [(0, 0), *pairs, (0, 0)], mode)
    raise CodegenError(
        f"node '{node.id}' (op {node.op.value}, from '{node.source}') pads with mode '{mode}', which keras.ops.pad "
        "cannot express on the TensorFlow backend"
    )


def edge_pad(p: KerasPrinter, node: NodeBase, x: str, pairs: list[tuple[int, int]], mode: str) -> str:
    """Replicate or circular padding, which TensorFlow's pad lacks, as one concatenate per padded axis
    (`pairs[axis]`, physical axes): the edge row repeated, or the rows from the other end. Both are
    separable, so padding one axis after another gives torch's corners too."""
    for axis, (before, after) in enumerate(pairs):
        if not (before or after):
            continue

        def rows(index: str, value: str = x, axis: int = axis) -> str:
            return f"{value}[{', '.join([':'] * axis + [index])}]"

        if mode == "circular":
            parts = [rows(f"-{before}:")] * bool(before) + [x] + [rows(f":{after}")] * bool(after)
        else:
            parts = (
                [f"keras.ops.repeat({rows('0:1')}, {before}, axis={axis})"] * bool(before)
                + [x]
                + [f"keras.ops.repeat({rows('-1:')}, {after}, axis={axis})"] * bool(after)
            )
        x = p.line(node, f"padded_{axis}", f"keras.ops.concatenate([{', '.join(parts)}], axis={axis})")
    return x


def _refuse(node: NodeBase, why: str) -> CodegenError:
    return CodegenError(f"node '{node.id}' (op {node.op.value}, from '{node.source}') {why}")


@emits(Op.CONV)
def _conv(p: KerasPrinter, node: NodeBase) -> None:
    """Conv{n}D or DepthwiseConv{n}D with 'valid' padding after an explicit pad. Keras refuses a
    stride and a dilation both above 1, so such a conv runs at stride 1 and keeps every stride-th
    output (the same values: output j of a strided conv is output j * stride of the unstrided one).
    Weights already held by a conv with other settings are applied through `keras.ops.conv`."""
    attrs: A.ConvAttrs = node.attrs  # type: ignore[assignment]
    info = p.param(node, "weight")
    n = len(info.shape) - 2
    spatial = _spatial_letters(info.axes, n)
    weight = p.array(node, "weight", "OI" + spatial)  # [out, in / groups, *kernel]
    out_ch, in_per_group, kernel = weight.shape[0], weight.shape[1], weight.shape[2:]
    in_ch = in_per_group * attrs.groups
    value = node.inputs[0]
    perm = p.spatial_perm(node, value)
    x = _pad_spatial(p, node, p.view(value, perm), list(attrs.padding), attrs.padding_mode)
    subsample = set(attrs.stride) != {1} and set(attrs.dilation) != {1}
    strides = None if set(attrs.stride) == {1} or subsample else lit(attrs.stride)
    dilation = None if set(attrs.dilation) == {1} else lit(attrs.dilation)
    common = {"strides": strides, "padding": '"valid"', "dilation_rate": dilation, "use_bias": "True" if "bias" in node.params else "False"}
    bias = {"bias": p.array(node, "bias")} if "bias" in node.params else {}
    spatial_axes = list(range(2, 2 + n))
    depthwise = attrs.groups == in_ch and attrs.groups > 1 and n <= 2
    if depthwise:
        multiplier = out_ch // in_ch
        # torch: out channel c * m + j reads in channel c; Keras: kernel[*k, c, j]
        kernel_cm = weight.reshape(in_ch, multiplier, *kernel).transpose(*spatial_axes, 0, 1)
        cls, args = f"DepthwiseConv{n}D", (lit(tuple(kernel)),)
        kwargs = {"depth_multiplier": None if multiplier == 1 else str(multiplier), **common}
        weights = {"kernel": np.ascontiguousarray(kernel_cm), **bias}
    else:
        cls, args = f"Conv{n}D", (str(out_ch), lit(tuple(kernel)))
        kwargs = {"groups": None if attrs.groups == 1 else str(attrs.groups), **common}
        weights = {"kernel": np.ascontiguousarray(weight.transpose(*spatial_axes, 1, 0)), **bias}
    owner = p.owner(node, cls, *args, **kwargs)
    if owner is not None and attrs.groups > 1 and not depthwise:
        raise _refuse(
            node,
            f"uses the weights of layer '{owner}' with other settings and groups={attrs.groups}; keras.ops.conv takes no "
            "groups, so generated Keras code cannot share them. Generate torch or ONNX code for this model.",
        )
    if owner is not None:
        function = "keras.ops.depthwise_conv" if depthwise else "keras.ops.conv"
        result = call(function, x, f"{owner}.kernel", strides=strides, padding='"valid"', dilation_rate=dilation)
        result = f"{result} + {owner}.bias" if bias else result
    else:
        result = f"{p.layer(node, cls, *args, weights=weights, **kwargs)}({x})"
    if subsample:
        full = p.line(node, "unstrided", result)
        result = f"{full}[:, {', '.join(f'::{s}' for s in attrs.stride)}, :]"
    p.assign(node, result, perm)


def _transpose_lengths(attrs: A.ConvTransposeAttrs, kernel: tuple[int, ...], in_sizes: list[int]) -> tuple[list[int], list[int], bool]:
    """How a 'valid' Conv{n}DTranspose reproduces torch's output: the zero rows to add at the end of
    each input axis, the rows to crop at the end of each output axis (torch's `padding` is cropped
    at the start), and whether Keras' `output_padding` can be used.

    torch's output length is (i - 1) * s - 2 * p + d * (k - 1) + 1 + output_padding. Keras takes
    `output_padding` only below the stride (torch: below the stride or the dilation); without it,
    Keras' length is i * s + max(d * (k - 1) + 1 - s, 0). Rows past the last one an input row reaches
    hold only the bias, in torch as in Keras, so zero input rows at the end give them exactly.
    """
    native = any(attrs.output_padding) and all(o < s for o, s in zip(attrs.output_padding, attrs.stride, strict=True))
    grow, crop = [], []
    for i, k, s, d, q, o in zip(in_sizes, kernel, attrs.stride, attrs.dilation, attrs.padding, attrs.output_padding, strict=True):
        reach = d * (k - 1) + 1
        wanted = (i - 1) * s - 2 * q + reach + o
        length = (i - 1) * s + reach + o if native else i * s + max(reach - s, 0)
        rows = max(0, -(-(q + wanted - length) // s))  # each zero input row adds `s` output rows
        length += rows * s
        grow.append(rows)
        crop.append(length - q - wanted)
    return grow, crop, native


@emits(Op.CONV_TRANSPOSE)
def _conv_transpose(p: KerasPrinter, node: NodeBase) -> None:
    """Conv{n}DTranspose with 'valid' padding, then a Cropping layer for torch's padding. Keras' transposed
    convs are ungrouped: groups > 1 split the input, run one layer per group and concat. An output
    padding Keras refuses (not below the stride) is zero input rows at the end and a crop (see
    `_transpose_lengths`)."""
    attrs: A.ConvTransposeAttrs = node.attrs  # type: ignore[assignment]
    if set(attrs.stride) != {1} and set(attrs.dilation) != {1}:
        raise _refuse(
            node,
            f"has stride {attrs.stride} and dilation {attrs.dilation}; Keras' Conv{len(attrs.stride)}DTranspose refuses a "
            "stride and a dilation both above 1. Generate torch or ONNX code for this model.",
        )
    info = p.param(node, "weight")
    n = len(info.shape) - 2
    weight = p.array(node, "weight", "IO" + _spatial_letters(info.axes, n))  # [in, out / groups, *kernel]
    bias = p.array(node, "bias") if "bias" in node.params else None
    kernel = weight.shape[2:]
    g, per_in, per_out = attrs.groups, weight.shape[0] // attrs.groups, weight.shape[1]
    value = node.inputs[0]
    perm = p.spatial_perm(node, value)
    x = p.view(value, perm)
    in_sizes = [p.shape(value)[a] for a in perm[1:-1]]
    grow, crop, native = _transpose_lengths(attrs, tuple(kernel), in_sizes)
    x = _pad_spatial(p, node, x, [(0, rows) for rows in grow])
    if g == 1:
        parts = [x]
    else:
        groups = p.line(node, "groups", f"keras.ops.split({x}, {g}, axis=-1)")
        parts = [f"{groups}[{i}]" for i in range(g)]
    outs = []
    for i, part in enumerate(parts):
        weights = {"kernel": np.ascontiguousarray(weight[i * per_in:(i + 1) * per_in].transpose(*range(2, 2 + n), 1, 0))}
        if bias is not None:
            weights["bias"] = bias[i * per_out:(i + 1) * per_out]
        ctor_args = dict(
            strides=None if set(attrs.stride) == {1} else lit(attrs.stride),
            padding='"valid"',
            output_padding=lit(attrs.output_padding) if native else None,
            dilation_rate=None if set(attrs.dilation) == {1} else lit(attrs.dilation),
            use_bias="True" if bias is not None else "False",
        )
        if g == 1:
            layer = p.layer(node, f"Conv{n}DTranspose", str(per_out), lit(tuple(kernel)), **ctor_args, weights=weights)
        else:
            name = p.layer_name(node, f"_g{i}")
            layer = call(f"layers.Conv{n}DTranspose", str(per_out), lit(tuple(kernel)), **ctor_args, dtype=p.policy_arg(node), name=f'"{name}"')
            p.weights.update({f"{name}/{k}": v for k, v in weights.items()})
        outs.append(f"{layer}({part})")
    result = outs[0] if g == 1 else f"keras.ops.concatenate([{', '.join(p.line(node, f'g{i}', o) for i, o in enumerate(outs))}], axis=-1)"
    if not any(attrs.padding) and not any(crop):
        p.assign(node, result, perm)
        return
    full = p.line(node, "full", result)
    cropping = _pairs([(q, c) for q, c in zip(attrs.padding, crop, strict=True)])
    p.assign(node, f"{p.helper_layer(node, 'crop', f'Cropping{n}D', cropping=cropping)}({full})", perm)


def _avg_divisor(in_sizes, out_sizes, kernel, stride, padding, include_pad) -> np.ndarray:  # noqa: ANN001
    """torch's divisor of each output position of an average pool, per spatial axis (outer product)."""
    per_axis = []
    for i, o, k, s, q in zip(in_sizes, out_sizes, kernel, stride, padding, strict=True):
        sizes = []
        for j in range(o):
            start = j * s - q
            end = min(start + k, i + q)
            if not include_pad:
                start, end = max(start, 0), min(end, i)
            sizes.append(end - start)
        per_axis.append(np.asarray(sizes, dtype=np.float64))
    divisor = per_axis[0]
    for sizes in per_axis[1:]:
        divisor = np.multiply.outer(divisor, sizes)
    return divisor


@emits(Op.MAX_POOL, Op.AVG_POOL)
def _pool(p: KerasPrinter, node: NodeBase) -> None:
    attrs: A.PoolAttrs = node.attrs  # type: ignore[assignment]
    n = len(attrs.kernel_size)
    if attrs.dilation and set(attrs.dilation) != {1}:
        raise CodegenError(f"node '{node.id}' ({node.op.value}, from '{node.source}') is dilated; Keras pools have no dilation")
    padding = list(attrs.padding or (0,) * n)
    stride = attrs.stride or attrs.kernel_size
    value = node.inputs[0]
    perm = p.spatial_perm(node, value)
    in_sizes = [p.shape(value)[a] for a in perm[1:-1]]
    out_sizes = [p.shape(node.outputs[0])[a] for a in perm[1:-1]]
    extra = [
        max(0, (o - 1) * s + k - (i + 2 * q))
        for i, o, k, s, q in zip(in_sizes, out_sizes, attrs.kernel_size, stride, padding, strict=True)
    ]
    pairs = [(q, q + e) for q, e in zip(padding, extra, strict=True)]
    x = p.view(value, perm)
    args = {"strides": None if tuple(stride) == tuple(attrs.kernel_size) else lit(tuple(stride))}
    if node.op is Op.MAX_POOL:
        x = _pad_spatial(p, node, x, pairs, value=float("-inf"))
        layer = p.layer(node, f"MaxPooling{n}D", lit(tuple(attrs.kernel_size)), **args)
        p.assign(node, f"{layer}({x})", perm)
        return
    x = _pad_spatial(p, node, x, pairs)
    layer = p.layer(node, f"AveragePooling{n}D", lit(tuple(attrs.kernel_size)), **args)
    divisor = _avg_divisor(in_sizes, out_sizes, attrs.kernel_size, stride, padding, attrs.count_include_pad)
    window = float(np.prod(attrs.kernel_size))
    if np.all(divisor == window):
        p.assign(node, f"{layer}({x})", perm)
        return
    # Keras divides by the window size; torch by `divisor` (padding not counted, or a ceil overhang)
    correction = (window / divisor).astype(np.float32).reshape(1, *out_sizes, 1)
    scale = p.constant(("pool_divisor", node.id), f"{p.layer_name(node)}_divisor", correction)
    pooled = p.line(node, "sum", f"{layer}({x})")
    p.assign(node, f"{pooled} * {scale}", perm)


@emits(Op.ADAPTIVE_AVG_POOL, Op.ADAPTIVE_MAX_POOL)
def _adaptive_pool(p: KerasPrinter, node: NodeBase) -> None:
    attrs: A.AdaptivePoolAttrs = node.attrs  # type: ignore[assignment]
    n = len(attrs.output_size)
    kind = "Average" if node.op is Op.ADAPTIVE_AVG_POOL else "Max"
    value = node.inputs[0]
    perm = p.spatial_perm(node, value)
    x = p.view(value, perm)
    if set(attrs.output_size) == {1}:
        layer = p.layer(node, f"Global{kind}Pooling{n}D", keepdims="True")
        p.assign(node, f"{layer}({x})", perm)
        return
    spatial = [p.shape(value)[a] for a in perm[1:-1]]
    windows = [adaptive_window(i, o) for i, o in zip(spatial, attrs.output_size, strict=True)]
    if any(w is None for w in windows):
        raise CodegenError(
            f"node '{node.id}' ({node.op.value}, from '{node.source}') pools {tuple(spatial)} to {attrs.output_size}: "
            "its windows have different sizes, which no single Keras pool can express"
        )
    kernel = tuple(w[0] for w in windows)  # type: ignore[index]
    stride = tuple(w[1] for w in windows)  # type: ignore[index]
    layer = p.layer(node, f"{kind}Pooling{n}D", lit(kernel), strides=None if stride == kernel else lit(stride))
    p.assign(node, f"{layer}({x})", perm)
