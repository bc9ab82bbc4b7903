"""Converters keyed by Keras layer class, one entry per class.

Each converter reads the layer's configuration and variables and emits IR nodes in the
channels-last layout. Kernels keep the Keras variable's axis order, named by letters: Conv2D
`HWIO`, Conv1D `WIO`, DepthwiseConv2D `HWOI` (its (kh, kw, C, 1) kernel: C groups of one input),
Conv2DTranspose `HWOI`, Dense `IO`. An `activation=` argument becomes the node after the layer.
Lookup walks the class's MRO to the nearest converted base only when the subclass redefines none of
the base's computing methods (`call`, `convolution_op`, the `kernel` property, ...:
`overridden_methods`), so such a layer is reported as unsupported instead of being misread.
"""

from __future__ import annotations

from typing import Any

import keras
import keras.src.ops.numpy
import numpy as np
from keras import layers as L

from asgnas_ir.frontends._table import ConverterTable
from asgnas_ir.frontends.keras.builder import Builder
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

LAYERS = ConverterTable("keras layers")


# What a subclass may override and still compute what its Keras base computes: construction,
# configuration, shape inference and (de)serialisation. `build` only creates the variables, which a
# converter reads from the built layer. Any other override (call, convolution_op, the kernel
# property, quantized paths, ...) can change the forward pass that the converter writes from the
# base class's semantics, so the layer is reported instead of being misread.
_NON_COMPUTING = frozenset({
    "__init__", "__new__", "__repr__", "__str__", "build", "get_config", "from_config",
    "compute_output_shape", "compute_output_spec", "get_build_config", "build_from_config",
    "save_own_variables", "load_own_variables", "_api_export_path", "_api_export_symbol_id",
    # masks are refused on their own, by the driver, wherever one reaches a layer that applies it
    "supports_masking", "compute_mask",
    "__module__", "__doc__", "__qualname__", "__dict__", "__weakref__", "__annotations__",
    "__firstlineno__", "__static_attributes__", "__orig_bases__", "__parameters__", "__slots__",
})


def _converted_base(cls: type) -> type | None:
    for base in cls.__mro__:
        if LAYERS.get(base) is not None:
            return base
    return None


def overridden_methods(layer: Any) -> list[str]:
    """`Base.name` of every attribute of the converted Keras base class that a user subclass of it
    redefines, other than the non-computing ones (empty for a Keras class or a faithful subclass)."""
    cls = type(layer)
    base = _converted_base(cls)
    if base is None or base is cls:
        return []
    inherited = {name for klass in base.__mro__ if klass is not object for name in vars(klass)}
    found = []
    for klass in cls.__mro__[: cls.__mro__.index(base)]:
        if klass.__module__.startswith("keras"):
            continue
        for name in vars(klass):
            if name in inherited and name not in _NON_COMPUTING:
                found.append(f"{base.__name__}.{name}")
    return sorted(set(found))


def lookup(layer: Any) -> Any:
    """The converter for `layer`'s class or its nearest converted base, or None where a subclass
    redefines what the base computes (`overridden_methods`) or a Keras subclass has its own `call`."""
    cls = type(layer)
    if overridden_methods(layer):
        return None
    for base in cls.__mro__:
        converter = LAYERS.get(base)
        if converter is not None:
            return converter
        if "call" in base.__dict__ and base is not cls and base.__module__.startswith("keras"):
            return None
        if "call" in cls.__dict__ and base is cls and not cls.__module__.startswith("keras"):
            return None
    return None


def _tuple(value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, (tuple, list)):
        return tuple(int(v) for v in value) if len(value) == n else tuple(int(value[0]) for _ in range(n))
    return tuple(int(value) for _ in range(n))


def _channels_last(b: Builder) -> None:
    if b.config("data_format", "channels_last") != "channels_last":
        raise b.fail("data_format='channels_first' is not supported by the Keras frontend; use channels_last")


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF's 'same' padding: output ceil(size/stride), the odd pixel padded at the end."""
    span = dilation * (kernel - 1) + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return (total // 2, total - total // 2)


def conv_pads(b: Builder, x: str, kernel: tuple[int, ...], strides: tuple[int, ...], dilation: tuple[int, ...]) -> A.Pads:
    padding = b.config("padding", "valid")
    spatial = b.value(x).shape[1:-1]
    if padding == "valid":
        return tuple((0, 0) for _ in kernel)
    if padding == "same":
        return tuple(same_pads(s, k, st, d) for s, k, st, d in zip(spatial, kernel, strides, dilation, strict=True))
    if padding == "causal" and len(kernel) == 1:
        return ((dilation[0] * (kernel[0] - 1), 0),)
    raise b.fail(f"padding='{padding}' is not supported")


# ---- activations ----------------------------------------------------------------------------------

_ACTIVATIONS: dict[str, tuple[Op, A.Attrs | None]] = {
    "relu": (Op.RELU, None),
    "relu6": (Op.CLAMP, A.ClampAttrs(min=0.0, max=6.0)),
    "sigmoid": (Op.SIGMOID, None),
    "tanh": (Op.TANH, None),
    "silu": (Op.SILU, None),
    "swish": (Op.SILU, None),
    "gelu": (Op.GELU, A.GeluAttrs(approximate="none")),
    "elu": (Op.ELU, A.EluAttrs(alpha=1.0)),
    "softplus": (Op.SOFTPLUS, A.SoftplusAttrs()),
    "mish": (Op.MISH, None),
    "hard_sigmoid": (Op.HARDSIGMOID, None),
    "hard_silu": (Op.HARDSWISH, None),
    "hard_swish": (Op.HARDSWISH, None),
    "leaky_relu": (Op.LEAKY_RELU, A.LeakyReluAttrs(negative_slope=0.2)),
    "exponential": (Op.EXP, None),
}


def _builtin_activation(name: str) -> Any:
    try:
        return keras.activations.get(name)
    except (ValueError, TypeError):
        return None


def activation(b: Builder, x: str, fn: Any, *, name: str | None = None) -> str:
    """The node for a Keras activation function (a callable or its name); 'linear'/None emit nothing."""
    if fn is None:
        return x
    key = fn if isinstance(fn, str) else getattr(fn, "__name__", repr(fn))
    if key in ("linear", "identity"):
        return x
    if key == "softmax":
        return b.emit(Op.SOFTMAX, [x], A.AxisAttrs(axis=b.rank(x) - 1), name=name)
    if key not in _ACTIVATIONS:
        raise b.fail(f"activation '{key}' is not supported")
    if not isinstance(fn, str) and _builtin_activation(key) is not fn:
        # a user function that happens to share a built-in's name (say an approximate gelu) must not be
        # lowered as the built-in: the generated code would compute something else
        raise b.fail(
            f"activation function '{key}' is the user's own function, not keras.activations.{key}; use the Keras "
            "built-in, or an Activation layer with a supported built-in, so the lowering is exact"
        )
    op, attrs = _ACTIVATIONS[key]
    return b.emit(op, [x], attrs, name=name)


def _activation_after(b: Builder, x: str) -> str:
    return activation(b, x, b.config("activation"), name=f"{b.source}_act")


@LAYERS.register(L.Activation)
def activation_layer(b: Builder, layer: Any, xs: list[str]) -> str:
    """Activation(activation)"""
    return activation(b, xs[0], layer.activation)


@LAYERS.register(L.ReLU)
def relu(b: Builder, layer: Any, xs: list[str]) -> str:
    """ReLU(max_value=None, negative_slope=0.0, threshold=0.0)"""
    if float(layer.threshold) != 0.0:
        raise b.fail("ReLU with a threshold is not supported")
    slope, top = float(layer.negative_slope), layer.max_value
    if slope != 0.0:
        if top is not None:
            raise b.fail("ReLU with both negative_slope and max_value is not supported")
        return b.emit(Op.LEAKY_RELU, xs, A.LeakyReluAttrs(negative_slope=slope))
    if top is not None:
        return b.emit(Op.CLAMP, xs, A.ClampAttrs(min=0.0, max=float(top)))
    return b.emit(Op.RELU, xs)


@LAYERS.register(L.LeakyReLU)
def leaky_relu(b: Builder, layer: Any, xs: list[str]) -> str:
    """LeakyReLU(negative_slope=0.3)"""
    return b.emit(Op.LEAKY_RELU, xs, A.LeakyReluAttrs(negative_slope=float(layer.negative_slope)))


@LAYERS.register(L.ELU)
def elu(b: Builder, layer: Any, xs: list[str]) -> str:
    """ELU(alpha=1.0)"""
    return b.emit(Op.ELU, xs, A.EluAttrs(alpha=float(layer.alpha)))


@LAYERS.register(L.Softmax)
def softmax(b: Builder, layer: Any, xs: list[str]) -> str:
    """Softmax(axis=-1), called without a mask"""
    if b.call_kwargs.get("mask") is not None:
        raise b.fail("Softmax with a mask is not supported")
    axis = layer.axis
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise b.fail("Softmax over several axes is not supported")
        axis = axis[0]
    return b.emit(Op.SOFTMAX, xs, A.AxisAttrs(axis=int(axis) % b.rank(xs[0])))


@LAYERS.register(L.Identity)
def identity(b: Builder, layer: Any, xs: list[str]) -> str:
    """Identity(): no node"""
    return xs[0]


@LAYERS.register(L.Dropout)
def dropout(b: Builder, layer: Any, xs: list[str]) -> str:
    """Dropout(rate, noise_shape=None): element-wise; channel-wise when noise_shape is 1 on every axis
    but the batch and the channels; sample-wise when it is 1 on every axis but the batch (EfficientNet's
    drop-connect). The IR has no other sharing pattern."""
    noise = getattr(layer, "noise_shape", None)
    if noise is None:
        return b.emit(Op.DROPOUT, xs, A.DropoutAttrs(p=float(layer.rate)))
    shape = b.value(xs[0]).shape
    noise = tuple(noise)
    if len(noise) != len(shape):
        raise b.fail(f"noise_shape {noise} does not match the input's rank {len(shape)}")
    full = [d is None or int(d) == s for d, s in zip(noise, shape, strict=True)]
    if all(full):
        return b.emit(Op.DROPOUT, xs, A.DropoutAttrs(p=float(layer.rate)))
    last = len(shape) - 1
    if full[0] and full[last] and all(noise[i] is not None and int(noise[i]) == 1 for i in range(1, last)):
        return b.emit(Op.DROPOUT, xs, A.DropoutAttrs(p=float(layer.rate), channelwise=True))
    if full[0] and all(noise[i] is not None and int(noise[i]) == 1 for i in range(1, len(shape))):
        return b.emit(Op.DROPOUT, xs, A.DropoutAttrs(p=float(layer.rate), samplewise=True))
    raise b.fail(
        f"noise_shape {noise} shares the dropout mask in a pattern the IR cannot express; only None, the full "
        "shape, 1 on every axis but the batch and the channels (SpatialDropout) or 1 on every axis but the "
        "batch (drop-connect) are supported"
    )


@LAYERS.register(L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D)
def spatial_dropout(b: Builder, layer: Any, xs: list[str]) -> str:
    """SpatialDropout{1,2,3}D(rate): drops whole channels"""
    return b.emit(Op.DROPOUT, xs, A.DropoutAttrs(p=float(layer.rate), channelwise=True))


@LAYERS.register(L.Lambda)
def lambda_layer(b: Builder, layer: Any, xs: list[str]) -> str:
    """Lambda(function): arbitrary Python, refused"""
    raise b.fail("Lambda layers run arbitrary Python and cannot be lowered; replace it with Keras layers")


# ---- convolutions -----------------------------------------------------------------------------------


def _spatial(n: int) -> str:
    return "DHW"[3 - n :]


@LAYERS.register(L.Conv1D, L.Conv2D, L.Conv3D)
def conv(b: Builder, layer: Any, xs: list[str]) -> str:
    """Conv{1,2,3}D(filters, kernel_size, strides=1, padding='valid', data_format=None, dilation_rate=1, groups=1, activation=None, use_bias=True)"""
    _channels_last(b)
    n = len(layer.kernel_size)
    strides, dilation = _tuple(layer.strides, n), _tuple(layer.dilation_rate, n)
    kernel = _tuple(layer.kernel_size, n)
    attrs = A.ConvAttrs(
        stride=strides, padding=conv_pads(b, xs[0], kernel, strides, dilation), dilation=dilation,
        groups=int(layer.groups), channels_last=True,
    )
    params = {"weight": b.add_kernel(layer, _spatial(n) + "IO")}
    if layer.use_bias:
        params["bias"] = b.add_param(layer.bias, "O")
    return _activation_after(b, b.emit(Op.CONV, xs, attrs, params))


def _depthwise(b: Builder, layer: Any, x: str, kernel_var: Any, bias: Any, name: str | None = None) -> str:
    n = len(layer.kernel_size)
    if int(layer.depth_multiplier) != 1:
        raise b.fail("depth_multiplier > 1 is not supported (its (kh, kw, C, M) kernel has no single output axis)")
    strides, dilation = _tuple(layer.strides, n), _tuple(layer.dilation_rate, n)
    kernel = _tuple(layer.kernel_size, n)
    channels = b.value(x).shape[-1]
    attrs = A.ConvAttrs(
        stride=strides, padding=conv_pads(b, x, kernel, strides, dilation), dilation=dilation,
        groups=int(channels), channels_last=True,
    )
    params = {"weight": b.add_param(kernel_var, _spatial(n) + "OI")}
    if bias is not None:
        params["bias"] = b.add_param(bias, "O")
    return b.emit(Op.CONV, [x], attrs, params, name=name)


@LAYERS.register(L.DepthwiseConv1D, L.DepthwiseConv2D)
def depthwise_conv(b: Builder, layer: Any, xs: list[str]) -> str:
    """DepthwiseConv{1,2}D(kernel_size, strides=1, padding='valid', depth_multiplier=1, dilation_rate=1, activation=None, use_bias=True)"""
    _channels_last(b)
    y = _depthwise(b, layer, xs[0], layer.kernel, layer.bias if layer.use_bias else None)
    return _activation_after(b, y)


@LAYERS.register(L.SeparableConv1D, L.SeparableConv2D)
def separable_conv(b: Builder, layer: Any, xs: list[str]) -> str:
    """SeparableConv{1,2}D(filters, kernel_size, strides=1, padding='valid', depth_multiplier=1, dilation_rate=1, activation=None, use_bias=True):
    a depthwise conv without bias, then a 1x1 conv with the bias"""
    _channels_last(b)
    n = len(layer.kernel_size)
    y = _depthwise(b, layer, xs[0], layer.depthwise_kernel, None, name=f"{b.source}_depthwise")
    params = {"weight": b.add_param(layer.pointwise_kernel, _spatial(n) + "IO")}
    if layer.use_bias:
        params["bias"] = b.add_param(layer.bias, "O")
    ones = tuple(1 for _ in range(n))
    attrs = A.ConvAttrs(stride=ones, padding=tuple((0, 0) for _ in range(n)), dilation=ones, channels_last=True)
    y = b.emit(Op.CONV, [y], attrs, params, name=f"{b.source}_pointwise")
    return _activation_after(b, y)


@LAYERS.register(L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
def conv_transpose(b: Builder, layer: Any, xs: list[str]) -> str:
    """Conv{1,2,3}DTranspose(filters, kernel_size, strides=1, padding='valid', output_padding=None, dilation_rate=1, activation=None, use_bias=True)

    torch-style (symmetric crop, extra rows at the end) attributes; TF's 'same' crops
    floor(total/2) at the start, so an odd total leaves one row more that a slice removes."""
    _channels_last(b)
    if layer.output_padding is not None:
        raise b.fail("Conv*DTranspose with output_padding is not supported")
    n = len(layer.kernel_size)
    kernel, strides, dilation = _tuple(layer.kernel_size, n), _tuple(layer.strides, n), _tuple(layer.dilation_rate, n)
    spatial = b.value(xs[0]).shape[1:-1]
    pads, extra, wanted = [], [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilation, strict=True):
        span = d * (k - 1) + 1
        if layer.padding == "valid":
            pads.append(0)
            extra.append(max(s - span, 0))
            wanted.append(size * s + max(span - s, 0))
        elif layer.padding == "same":
            total = max(span - s, 0)
            pads.append(total // 2)
            extra.append(max(s - span, 0))
            wanted.append(size * s)
        else:
            raise b.fail(f"padding='{layer.padding}' is not supported")
    attrs = A.ConvTransposeAttrs(
        stride=strides, padding=tuple(pads), output_padding=tuple(extra), dilation=dilation, channels_last=True
    )
    params = {"weight": b.add_kernel(layer, _spatial(n) + "OI")}
    if layer.use_bias:
        params["bias"] = b.add_param(layer.bias, "O")
    y = b.emit(Op.CONV_TRANSPOSE, xs, attrs, params)
    for i, size in enumerate(wanted):
        if b.value(y).shape[1 + i] != size:
            y = b.emit(Op.SLICE, [y], A.SliceAttrs(axis=1 + i, start=0, stop=size), name=f"{b.source}_crop")
    return _activation_after(b, y)


# ---- dense and normalisation ----------------------------------------------------------------------------


@LAYERS.register(L.Dense)
def dense(b: Builder, layer: Any, xs: list[str]) -> str:
    """Dense(units, activation=None, use_bias=True)"""
    if getattr(layer, "quantization_mode", None):
        raise b.fail("quantized Dense layers are not supported")
    params = {"weight": b.add_kernel(layer, "IO")}
    if layer.use_bias:
        params["bias"] = b.add_param(layer.bias, "O")
    return _activation_after(b, b.emit(Op.LINEAR, xs, None, params))


def _last_axis(b: Builder, x: str, axis: Any, what: str) -> None:
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if [int(a) % b.rank(x) for a in axes] != [b.rank(x) - 1]:
        raise b.fail(f"{what} over axis {axis} is not supported; only the channel (last) axis")


@LAYERS.register(L.BatchNormalization)
def batch_norm(b: Builder, layer: Any, xs: list[str]) -> str:
    """BatchNormalization(axis=-1, momentum=0.99, epsilon=0.001, center=True, scale=True), inference mode"""
    _last_axis(b, xs[0], layer.axis, "BatchNormalization")
    if getattr(layer, "renorm", False):
        raise b.fail("BatchNormalization with renorm is not supported")
    params = {"running_mean": b.add_param(layer.moving_mean, "C"), "running_var": b.add_param(layer.moving_variance, "C")}
    if layer.scale:
        params["weight"] = b.add_param(layer.gamma, "C")
    if layer.center:
        params["bias"] = b.add_param(layer.beta, "C")
    attrs = A.BatchNormAttrs(eps=float(layer.epsilon), momentum=1.0 - float(layer.momentum))
    return b.emit(Op.BATCH_NORM, xs, attrs, params)


@LAYERS.register(L.LayerNormalization)
def layer_norm(b: Builder, layer: Any, xs: list[str]) -> str:
    """LayerNormalization(axis=-1, epsilon=0.001, center=True, scale=True, rms_scaling=False)"""
    if getattr(layer, "rms_scaling", False):
        raise b.fail("LayerNormalization with rms_scaling is not supported")
    _last_axis(b, xs[0], layer.axis, "LayerNormalization")
    params = {}
    if layer.scale:
        params["weight"] = b.add_param(layer.gamma, "C")
    if layer.center:
        params["bias"] = b.add_param(layer.beta, "C")
    return b.emit(Op.LAYER_NORM, xs, A.LayerNormAttrs(axes=(b.rank(xs[0]) - 1,), eps=float(layer.epsilon)), params)


@LAYERS.register(L.GroupNormalization)
def group_norm(b: Builder, layer: Any, xs: list[str]) -> str:
    """GroupNormalization(groups=32, axis=-1, epsilon=0.001, center=True, scale=True)"""
    _last_axis(b, xs[0], layer.axis, "GroupNormalization")
    params = {}
    if layer.scale:
        params["weight"] = b.add_param(layer.gamma, "C")
    if layer.center:
        params["bias"] = b.add_param(layer.beta, "C")
    return b.emit(Op.GROUP_NORM, xs, A.GroupNormAttrs(num_groups=int(layer.groups), eps=float(layer.epsilon)), params)


@LAYERS.register(L.Rescaling)
def rescaling(b: Builder, layer: Any, xs: list[str]) -> str:
    """Rescaling(scale, offset=0.0): x * scale + offset"""
    y = xs[0]
    for op, value, label in ((Op.MUL, layer.scale, "scale"), (Op.ADD, layer.offset, "offset")):
        array = np.asarray(keras.ops.convert_to_numpy(value) if not isinstance(value, (int, float)) else value, dtype=np.float32)
        if array.size == 1:
            if float(array.reshape(())) != (1.0 if op is Op.MUL else 0.0):
                y = b.emit(op, [y], A.BinaryAttrs(scalar=float(array.reshape(()))), name=f"{b.source}_{label}")
        else:
            y = b.emit(op, [y, b.constant(array, label)], A.BinaryAttrs(), name=f"{b.source}_{label}")
    return y if y != xs[0] else b.emit(Op.IDENTITY, xs)


@LAYERS.register(L.Normalization)
def normalization(b: Builder, layer: Any, xs: list[str]) -> str:
    """Normalization(axis=-1, mean=None, variance=None, invert=False): (x - mean) / max(sqrt(variance), epsilon)"""
    if layer.invert:
        raise b.fail("Normalization with invert=True is not supported")
    mean = np.asarray(keras.ops.convert_to_numpy(layer.mean), dtype=np.float32)
    var = np.asarray(keras.ops.convert_to_numpy(layer.variance), dtype=np.float32)
    shape = tuple(int(d) for d in layer._broadcast_shape) if getattr(layer, "_broadcast_shape", None) else mean.shape
    rank = b.rank(xs[0])
    shape = tuple(shape)[-(rank - 1):] if len(shape) == rank else shape
    std = np.maximum(np.sqrt(var), keras.backend.epsilon()).astype(np.float32)
    y = b.emit(Op.SUB, [xs[0], b.constant(mean.reshape(shape), "mean")], A.BinaryAttrs(), name=f"{b.source}_center")
    return b.emit(Op.DIV, [y, b.constant(std.reshape(shape), "std")], A.BinaryAttrs(), name=f"{b.source}_scale")


# ---- merging --------------------------------------------------------------------------------------------


def _chain(b: Builder, op: Op, xs: list[str]) -> str:
    if len(xs) < 2:
        raise b.fail("a merge layer needs at least two inputs")
    y = xs[0]
    for i, x in enumerate(xs[1:]):
        y = b.emit(op, [y, x], A.BinaryAttrs(), name=b.source if i == len(xs) - 2 else f"{b.source}_{i}")
    return y


@LAYERS.register(L.Add)
def add(b: Builder, layer: Any, xs: list[str]) -> str:
    """Add()([x, y, ...])"""
    return _chain(b, Op.ADD, xs)


@LAYERS.register(L.Multiply)
def multiply(b: Builder, layer: Any, xs: list[str]) -> str:
    """Multiply()([x, y, ...])"""
    return _chain(b, Op.MUL, xs)


@LAYERS.register(L.Subtract)
def subtract(b: Builder, layer: Any, xs: list[str]) -> str:
    """Subtract()([x, y])"""
    if len(xs) != 2:
        raise b.fail("Subtract needs exactly two inputs")
    return b.emit(Op.SUB, xs, A.BinaryAttrs())


@LAYERS.register(L.Average)
def average(b: Builder, layer: Any, xs: list[str]) -> str:
    """Average()([x, y, ...]): their sum times 1/n"""
    total = _chain(b, Op.ADD, xs)
    return b.emit(Op.MUL, [total], A.BinaryAttrs(scalar=1.0 / len(xs)), name=f"{b.source}_mean")


@LAYERS.register(L.Concatenate)
def concatenate(b: Builder, layer: Any, xs: list[str]) -> str:
    """Concatenate(axis=-1)([x, y, ...])"""
    return b.emit(Op.CONCAT, xs, A.AxisAttrs(axis=int(layer.axis) % b.rank(xs[0])))


_BINARY_OPS = {"Add": Op.ADD, "Subtract": Op.SUB, "Multiply": Op.MUL, "Divide": Op.DIV, "TrueDivide": Op.DIV}


def _binary_op(b: Builder, layer: Any, xs: list[str]) -> str:
    """keras.ops add/subtract/multiply/divide (x + y on Keras tensors): two tensors, or a tensor and a number"""
    op = _BINARY_OPS[type(layer).__name__]
    if len(xs) == 2:
        return b.emit(op, xs, A.BinaryAttrs())
    args = list(b.call_args)
    numbers = [a for a in args if isinstance(a, (int, float, np.number)) and not isinstance(a, bool)]
    if len(xs) != 1 or len(args) != 2 or len(numbers) != 1:
        raise b.fail(f"{type(layer).__name__} needs two tensors or a tensor and a number")
    return b.emit(op, xs, A.BinaryAttrs(scalar=float(numbers[0]), reverse=args[0] is numbers[0]))


LAYERS.add([getattr(keras.src.ops.numpy, name) for name in _BINARY_OPS], _binary_op)


def _layer_scale_class() -> Any:
    from keras.src.applications.convnext import LayerScale

    return LayerScale


@LAYERS.register(_layer_scale_class())
def layer_scale(b: Builder, layer: Any, xs: list[str]) -> str:
    """keras.applications' ConvNeXt LayerScale(init_values, projection_dim): x * gamma"""
    gamma = b.constant(None, "gamma", variable=layer.gamma, axes="C")
    return b.emit(Op.MUL, [xs[0], gamma], A.BinaryAttrs())


def _custom_scale_class() -> Any:
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    return CustomScaleLayer


@LAYERS.register(_custom_scale_class())
def custom_scale(b: Builder, layer: Any, xs: list[str]) -> str:
    """keras.applications' InceptionResNetV2 CustomScaleLayer(scale)([x, r]): x + r * scale, the
    block's residual branch scaled before the shortcut add"""
    if len(xs) != 2:
        raise b.fail(f"CustomScaleLayer takes [shortcut, residual], got {len(xs)} input(s)")
    try:
        scale = float(layer.scale)
    except (TypeError, ValueError):
        raise b.fail(f"CustomScaleLayer's scale {layer.scale!r} is not a number") from None
    scaled = b.emit(Op.MUL, [xs[1]], A.BinaryAttrs(scalar=scale), name=f"{b.source}_scale")
    return b.emit(Op.ADD, [xs[0], scaled], A.BinaryAttrs())


# ---- pooling ----------------------------------------------------------------------------------------------


def _pool(b: Builder, layer: Any, xs: list[str], op: Op) -> str:
    _channels_last(b)
    x = xs[0]
    n = b.rank(x) - 2
    kernel = _tuple(layer.pool_size, n)
    strides = _tuple(layer.strides if layer.strides is not None else layer.pool_size, n)
    padding, ceil = [], False
    if layer.padding == "same":
        for size, k, s in zip(b.value(x).shape[1:-1], kernel, strides, strict=True):
            before, after = same_pads(size, k, s)
            if after != before and s == 1:
                raise b.fail("'same' pooling with an even pool size and stride 1 pads unevenly; pad with ZeroPadding first")
            ceil = ceil or after != before
            padding.append(before)
    elif layer.padding == "valid":
        padding = [0] * n
    else:
        raise b.fail(f"padding='{layer.padding}' is not supported")
    # 'same' pads are not counted by Keras' average: count_include_pad=False; an uneven end pad is
    # torch's ceil mode (the extra window reads one row of padding at the end).
    attrs = A.PoolAttrs(
        kernel_size=kernel, stride=strides, padding=tuple(padding), ceil_mode=ceil, count_include_pad=False, channels_last=True
    )
    return b.emit(op, [x], attrs)


@LAYERS.register(L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D)
def max_pool(b: Builder, layer: Any, xs: list[str]) -> str:
    """MaxPooling{1,2,3}D(pool_size, strides=None, padding='valid')"""
    return _pool(b, layer, xs, Op.MAX_POOL)


@LAYERS.register(L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D)
def avg_pool(b: Builder, layer: Any, xs: list[str]) -> str:
    """AveragePooling{1,2,3}D(pool_size, strides=None, padding='valid')"""
    return _pool(b, layer, xs, Op.AVG_POOL)


@LAYERS.register(L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D)
def global_avg_pool(b: Builder, layer: Any, xs: list[str]) -> str:
    """GlobalAveragePooling{1,2,3}D(keepdims=False): mean over the spatial axes"""
    _channels_last(b)
    if b.call_kwargs.get("mask") is not None:
        raise b.fail("GlobalAveragePooling with a mask is not supported")
    axes = tuple(range(1, b.rank(xs[0]) - 1))
    return b.emit(Op.MEAN, xs, A.ReduceAttrs(axes=axes, keepdim=bool(layer.keepdims)))


@LAYERS.register(L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D)
def global_max_pool(b: Builder, layer: Any, xs: list[str]) -> str:
    """GlobalMaxPooling{1,2,3}D(keepdims=False): an adaptive max pool to size 1 (reshaped to [N, C])"""
    _channels_last(b)
    x = xs[0]
    n = b.rank(x) - 2
    y = b.emit(Op.ADAPTIVE_MAX_POOL, [x], A.AdaptivePoolAttrs(output_size=(1,) * n, channels_last=True))
    if layer.keepdims:
        return y
    shape = b.value(x).shape
    return b.emit(Op.RESHAPE, [y], A.ReshapeAttrs(shape=(shape[0], shape[-1])), name=f"{b.source}_squeeze")


# ---- shape ------------------------------------------------------------------------------------------------


@LAYERS.register(L.Flatten)
def flatten(b: Builder, layer: Any, xs: list[str]) -> str:
    """Flatten(): [N, ...] -> [N, prod(...)] in row-major (channels-last) order"""
    _channels_last(b)
    rank = b.rank(xs[0])
    if rank <= 2:
        return b.emit(Op.IDENTITY, xs) if rank == 2 else b.emit(Op.RESHAPE, xs, A.ReshapeAttrs(shape=(b.batch, 1)))
    return b.emit(Op.FLATTEN, xs, A.FlattenAttrs(start_axis=1, end_axis=rank - 1))


@LAYERS.register(L.Reshape)
def reshape(b: Builder, layer: Any, xs: list[str]) -> str:
    """Reshape(target_shape): the batch axis is kept"""
    x = xs[0]
    target = [int(d) for d in layer.target_shape]
    total = int(np.prod(b.value(x).shape[1:]))
    if -1 in target:
        known = int(np.prod([d for d in target if d != -1]))
        target[target.index(-1)] = total // known
    return b.emit(Op.RESHAPE, [x], A.ReshapeAttrs(shape=(b.value(x).shape[0], *target)))


@LAYERS.register(L.Permute)
def permute(b: Builder, layer: Any, xs: list[str]) -> str:
    """Permute(dims): dims are 1-based and exclude the batch axis"""
    return b.emit(Op.PERMUTE, xs, A.PermuteAttrs(perm=(0, *(int(d) for d in layer.dims))))


def _spatial_pairs(b: Builder, x: str, value: Any, what: str) -> list[tuple[int, int]]:
    """A ZeroPadding/Cropping amount as one (before, after) pair per spatial axis. Keras stores the
    1D layers' amount as a bare (before, after) and the 2D/3D ones as a pair per axis."""
    n = b.rank(x) - 2
    if isinstance(value, int):
        return [(value, value)] * n
    items = tuple(value)
    if items and all(isinstance(v, (int, np.integer)) for v in items):
        items = (items,) if n == 1 else tuple((int(v), int(v)) for v in items)
    pairs = [(int(p[0]), int(p[1])) for p in items]
    if len(pairs) != n:
        raise b.fail(f"{what} {value!r} does not give one (before, after) pair for each of the {n} spatial axes")
    return pairs


@LAYERS.register(L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D)
def zero_padding(b: Builder, layer: Any, xs: list[str]) -> str:
    """ZeroPadding{1,2,3}D(padding): ((before, after), ...) per spatial axis"""
    _channels_last(b)
    pads = ((0, 0), *_spatial_pairs(b, xs[0], layer.padding, "padding"), (0, 0))
    return b.emit(Op.PAD, xs, A.PadAttrs(pads=pads))


@LAYERS.register(L.Cropping1D, L.Cropping2D, L.Cropping3D)
def cropping(b: Builder, layer: Any, xs: list[str]) -> str:
    """Cropping{1,2,3}D(cropping): ((before, after), ...) per spatial axis, one slice per cropped axis.
    A slice rather than a negative pad: every codegen target writes slices already, and the channel
    analysis treats a slice on a spatial axis as passing channels through."""
    _channels_last(b)
    y = xs[0]
    pairs = _spatial_pairs(b, xs[0], layer.cropping, "cropping")
    cropped = [i for i, (before, after) in enumerate(pairs) if before or after]
    for i in cropped:
        before, after = pairs[i]
        size = b.value(y).shape[1 + i]
        if before + after >= size:
            raise b.fail(f"cropping {before} + {after} rows off spatial axis {i} of size {size} leaves nothing")
        name = b.source if i == cropped[-1] else f"{b.source}_{_spatial(len(pairs))[i].lower()}"
        y = b.emit(Op.SLICE, [y], A.SliceAttrs(axis=1 + i, start=before, stop=size - after), name=name)
    return y if cropped else b.emit(Op.IDENTITY, xs)


@LAYERS.register(L.InputLayer)
def input_layer(b: Builder, layer: Any, xs: list[str]) -> str:
    """InputLayer: a graph input (only reached when nested)"""
    return xs[0]


# registered last: the transformer converters add themselves to LAYERS on import
from asgnas_ir.frontends.keras import attention  # noqa: E402, F401

