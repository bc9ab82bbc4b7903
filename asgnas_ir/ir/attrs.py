"""Per-op attribute models.

Attributes are framework-neutral and explicit: every spatial parameter is a tuple with one entry per
spatial axis, paddings are (before, after) pairs, axes are non-negative indices into the value's
shape. Frontends normalise their framework's conventions into these forms; codegen prints them back.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Attrs(BaseModel):
    """Base of all attribute models: immutable, and unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoAttrs(Attrs):
    """Ops without attributes (relu, sigmoid, identity, ...)."""


Pads = tuple[tuple[int, int], ...]


class ConvAttrs(Attrs):
    """N-d convolution. The weight param's `axes` (e.g. "OIHW") says where out/in channels sit."""

    stride: tuple[int, ...]
    padding: Pads
    dilation: tuple[int, ...]
    groups: int = Field(1, ge=1)
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros"
    channels_last: bool = False


class ConvTransposeAttrs(Attrs):
    """N-d transposed convolution (the gradient of a strided conv)."""

    stride: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int = Field(1, ge=1)
    channels_last: bool = False


class PoolAttrs(Attrs):
    """Max or average pooling over the spatial axes."""

    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...] = ()
    ceil_mode: bool = False
    count_include_pad: bool = True
    channels_last: bool = False


class AdaptivePoolAttrs(Attrs):
    """Adaptive pooling to a fixed spatial output size."""

    output_size: tuple[int, ...]
    channels_last: bool = False


class BatchNormAttrs(Attrs):
    """Batch norm over the channel axis; running statistics are params with `trainable=False`."""

    eps: float = 1e-5
    momentum: float | None = 0.1


class LayerNormAttrs(Attrs):
    """Layer norm over the trailing `axes` (non-negative, ascending)."""

    axes: tuple[int, ...]
    eps: float = 1e-5


class GroupNormAttrs(Attrs):
    """Group norm: the channels split into `num_groups` blocks, each normalised on its own."""

    num_groups: int = Field(ge=1)
    eps: float = 1e-5


class InstanceNormAttrs(Attrs):
    """Instance norm: every channel of every sample normalised over its spatial axes."""

    eps: float = 1e-5
    momentum: float | None = 0.1


class LeakyReluAttrs(Attrs):
    negative_slope: float = 0.01


class ClampAttrs(Attrs):
    """Clamp into [min, max]; relu6 and hardtanh are clamps."""

    min: float | None = None
    max: float | None = None


class GeluAttrs(Attrs):
    approximate: Literal["none", "tanh"] = "none"


class EluAttrs(Attrs):
    alpha: float = 1.0


class SoftplusAttrs(Attrs):
    beta: float = 1.0
    threshold: float = 20.0


class PowAttrs(Attrs):
    """x ** exponent elementwise, with a scalar exponent."""

    exponent: float


class CastAttrs(Attrs):
    """The dtype the value is rounded or converted to (`float16`, `bfloat16`, `float32`, `float64`,
    or an integer dtype for whole numbers computed as floats), from a floating, integer or bool value."""

    dtype: str


class DropoutAttrs(Attrs):
    """Dropout is kept in the IR so the generated model trains like the source one."""

    p: float = Field(0.5, ge=0.0, le=1.0)
    channelwise: bool = False  # drop whole channels (Dropout2d) instead of single elements
    samplewise: bool = False  # drop whole samples (drop-connect / stochastic depth: one draw per sample)


class BinaryAttrs(Attrs):
    """Binary elementwise op. With `scalar` set the node has one tensor input and the scalar is the
    other operand; `reverse` puts the scalar first (``1.0 - x``)."""

    scalar: float | None = None
    reverse: bool = False


class AxisAttrs(Attrs):
    """Ops that act along one axis (concat, softmax)."""

    axis: int = Field(ge=0)


class SplitAttrs(Attrs):
    axis: int = Field(ge=0)
    sizes: tuple[int, ...]


class SliceAttrs(Attrs):
    axis: int = Field(ge=0)
    start: int = Field(ge=0)
    stop: int = Field(ge=0)
    step: int = Field(1, ge=1)


class ReshapeAttrs(Attrs):
    """Target shape; the leading axis keeps the batch size symbolic in generated code."""

    shape: tuple[int, ...]


class FlattenAttrs(Attrs):
    start_axis: int = Field(ge=0)
    end_axis: int = Field(ge=0)


class PermuteAttrs(Attrs):
    perm: tuple[int, ...]


class ReduceAttrs(Attrs):
    axes: tuple[int, ...]
    keepdim: bool = False


class CumsumAttrs(Attrs):
    """Running sum along `axis`: element i is the sum of elements 0..i."""

    axis: int = Field(ge=0)


class ResizeAttrs(Attrs):
    """Resampling of the axes `axes` (ascending, never the batch axis 0), like torch's `F.interpolate`
    on the axes after its channel axis.

    `size` is the output size of each resized axis. `scale` holds the scale factors when the source
    gave them instead of a size: torch then maps output coordinates to input ones by 1 / scale, not
    by in / out, which differs when in * scale is not a whole number, and generated code passing the
    factors on resizes inputs of other sizes as the source model does. `mode` is `nearest` (torch's
    floor rule), `linear` (bi-/trilinear) or `cubic` (torch's bicubic, a = -0.75); `align_corners`
    as in torch, for linear and cubic only.
    """

    axes: tuple[int, ...]
    mode: Literal["nearest", "linear", "cubic"]
    size: tuple[int, ...]
    scale: tuple[float, ...] | None = None
    align_corners: bool = False


class PadAttrs(Attrs):
    """Constant/reflect/replicate padding; `pads` has one (before, after) pair per axis."""

    pads: Pads
    mode: Literal["constant", "reflect", "replicate", "circular"] = "constant"
    value: float = 0.0


class EmbeddingAttrs(Attrs):
    """Table lookup: integer indices of any shape -> indices.shape + (dim,). Weight axes "VO" (vocabulary, output)."""

    num_embeddings: int = Field(ge=1)
    dim: int = Field(ge=1)


class ExpandAttrs(Attrs):
    """Broadcast to `shape` (the full target shape; no -1), like torch's `expand`."""

    shape: tuple[int, ...]


class AttentionAttrs(Attrs):
    """Scaled dot-product attention over head-split tensors.

    Inputs q [B, H, Tq, D], k [B, H, Tk, D], v [B, H, Tk, Dv] and an optional fourth input, an
    additive float mask broadcastable to [B, H, Tq, Tk]. Output [B, H, Tq, Dv] =
    softmax(q @ k^T * scale + mask (+ -inf above the diagonal when `causal`)) @ v. The scale is
    explicit so that removing heads or channels never changes it.
    """

    scale: float
    causal: bool = False


class OpaqueAttrs(Attrs):
    """A source op the IR does not know, kept so search can go around it.

    `target` is the source-framework callable (e.g. ``torch.erf``), `kind` how it was called, and
    `args` the call's non-tensor arguments as a JSON-compatible template where ``{"$input": i}``
    stands for the i-th tensor input.
    """

    target: str
    kind: Literal["function", "method", "module"]
    args: list = Field(default_factory=list)
    kwargs: dict = Field(default_factory=dict)
