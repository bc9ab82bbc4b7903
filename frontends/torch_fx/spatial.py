"""Converters for resampling and sliding windows: `F.interpolate` / `nn.Upsample` (the IR's `resize`,
or an adaptive average pool for mode "area"); `Tensor.unfold`, `F.unfold` / `nn.Unfold` (im2col) as
strided slices of one view, concatenated; `F.fold` / `nn.Fold` (col2im) as the windows' grids spread,
moved into place with pads and added.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx
from torch import nn

from asgnas_ir.frontends.torch_fx.builder import Builder
from asgnas_ir.frontends.torch_fx.composite import _part, _tensor
from asgnas_ir.frontends.torch_fx.functions import (
    FUNCTIONS,
    _axis,
    _observed_shape,
    _rank,
    bind,
    emit_pad,
    op_label,
    reshape_to,
)
from asgnas_ir.frontends.torch_fx.methods import METHODS
from asgnas_ir.frontends.torch_fx.modules import MODULES, _input
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

F = "torch.nn.functional"


# ---- resampling ---------------------------------------------------------------------------------

_MODES = {"nearest": "nearest", "linear": "linear", "bilinear": "linear", "trilinear": "linear", "bicubic": "cubic"}


def emit_interpolate(
    b: Builder, node: torch.fx.Node, x: str, size: Any, scale_factor: Any, mode: str, align_corners: bool | None,
    recompute_scale_factor: bool | None, antialias: bool = False,
) -> str:
    """F.interpolate / nn.Upsample as a resize node (or, for mode 'area', the adaptive average pool it is)."""
    spatial = _rank(b, x) - 2
    if spatial < 1:
        raise b.fail(f"{op_label(node)} needs a batched input with channels and spatial axes, got shape {list(b.value(x).shape)}")
    out_shape = _observed_shape(b, node)
    out_size = tuple(out_shape[2:])
    if mode == "area":
        return b.emit(Op.ADAPTIVE_AVG_POOL, [x], A.AdaptivePoolAttrs(output_size=out_size))
    if mode not in _MODES:
        raise b.fail(f"{op_label(node)} with mode={mode!r} is not supported (nearest, linear, bilinear, trilinear, bicubic, area)")
    if antialias:
        raise b.fail(f"{op_label(node)} with antialias=True is not supported")
    if (size is None) == (scale_factor is None):
        raise b.fail(f"{op_label(node)} needs exactly one of size and scale_factor")
    scale = None
    if scale_factor is not None and not recompute_scale_factor:
        # torch maps coordinates by 1 / scale_factor here, not by in / out: keep the factors
        factors = list(scale_factor) if isinstance(scale_factor, (list, tuple)) else [scale_factor] * spatial
        if any(not isinstance(f, (int, float)) or isinstance(f, bool) for f in factors):
            raise b.fail(f"{op_label(node)} with a tensor scale_factor is not supported; pass Python numbers")
        scale = tuple(float(f) for f in factors)
    attrs = A.ResizeAttrs(
        axes=tuple(range(2, 2 + spatial)), mode=_MODES[mode], size=out_size, scale=scale,  # type: ignore[arg-type]
        align_corners=bool(align_corners) if mode != "nearest" else False,
    )
    return b.emit(Op.RESIZE, [x], attrs)


@FUNCTIONS.register(f"{F}.interpolate", f"{F}.upsample")
def interpolate(b: Builder, node: torch.fx.Node) -> Any:
    """interpolate(input, size=None, scale_factor=None, mode='nearest', align_corners=None, recompute_scale_factor=None, antialias=False)"""
    names = ("input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias")
    call = bind(b, node, names)
    x = _tensor(b, node, call.get("input"), "input")
    return emit_interpolate(
        b, node, x, call.get("size"), call.get("scale_factor"), call.get("mode", "nearest"), call.get("align_corners"),
        call.get("recompute_scale_factor"), bool(call.get("antialias", False)),
    )


@FUNCTIONS.register(f"{F}.upsample_nearest", f"{F}.upsample_bilinear")
def upsample_fixed_mode(b: Builder, node: torch.fx.Node) -> Any:
    """upsample_nearest(input, size=None, scale_factor=None) / upsample_bilinear (align_corners=True)"""
    call = bind(b, node, ("input", "size", "scale_factor"))
    x = _tensor(b, node, call.get("input"), "input")
    bilinear = function_name(node).endswith("bilinear")
    return emit_interpolate(
        b, node, x, call.get("size"), call.get("scale_factor"), "bilinear" if bilinear else "nearest", True if bilinear else None, None,
    )


def function_name(node: torch.fx.Node) -> str:
    return str(getattr(node.target, "__name__", node.target))


@MODULES.register(nn.Upsample)
def upsample(b: Builder, node: torch.fx.Node) -> str:
    """Upsample(size=None, scale_factor=None, mode='nearest', align_corners=None, recompute_scale_factor=None)"""
    m: nn.Upsample = b.module(node)  # type: ignore[assignment]
    x = _input(b, node)
    return emit_interpolate(b, node, x, m.size, m.scale_factor, m.mode, m.align_corners, m.recompute_scale_factor)


# ---- sliding windows ---------------------------------------------------------------------------


@METHODS.register("unfold")
def unfold(b: Builder, node: torch.fx.Node) -> Any:
    """Tensor.unfold(dimension, size, step): the windows of `size` every `step` along `dimension`, that
    axis becoming the window count and a new last axis the window (slices of one view, concatenated)."""
    call = bind(b, node, ("input", "dimension", "size", "step"))
    x = _tensor(b, node, call.get("input"), "input")
    axis, size, step = _axis(b, x, call["dimension"]), int(call["size"]), int(call["step"])
    shape = b.value(x).shape
    count = (shape[axis] - size) // step + 1
    rank = len(shape)
    last = tuple(a for a in range(rank) if a != axis) + (axis,)
    moved = x if axis == rank - 1 else b.emit(Op.PERMUTE, [x], A.PermuteAttrs(perm=last), name=_part(b, node, "moved"))
    rest = tuple(shape[a] for a in range(rank) if a != axis)
    windows = []
    for i in range(count):
        piece = b.emit(Op.SLICE, [moved], A.SliceAttrs(axis=rank - 1, start=i * step, stop=i * step + size, step=1),
                       name=_part(b, node, f"window{i}"))
        windows.append(reshape_to(b, piece, (*rest[:axis], 1, *rest[axis:], size), name=_part(b, node, f"at{i}")))
    return windows[0] if count == 1 else b.emit(Op.CONCAT, windows, A.AxisAttrs(axis=axis))


def emit_im2col(
    b: Builder, node: torch.fx.Node, x: str, kernel: Any, dilation: Any, padding: Any, stride: Any
) -> str:
    """F.unfold / nn.Unfold (im2col) of [N, C, H, W]: [N, C * kh * kw, L], the window offsets inside each
    channel and the L window positions row by row, as torch lays them out. Each of the kh * kw offsets
    is one strided slice of the padded image (a view of every window's entry at that offset)."""
    shape = b.value(x).shape
    if len(shape) != 4:
        raise b.fail(f"{op_label(node)} is supported on a batched 4-d input [N, C, H, W], got shape {list(shape)}")
    kh, kw = _pair(kernel)
    dh, dw = _pair(dilation)
    ph, pw = _pair(padding)
    sh, sw = _pair(stride)
    if ph or pw:
        x = b.emit(Op.PAD, [x], A.PadAttrs(pads=((0, 0), (0, 0), (ph, ph), (pw, pw))), name=_part(b, node, "padded"))
    n, c, height, width = b.value(x).shape
    rows = (height - dh * (kh - 1) - 1) // sh + 1
    cols = (width - dw * (kw - 1) - 1) // sw + 1
    offsets = []
    for i in range(kh):
        for j in range(kw):
            tag = f"{i}_{j}"
            part = b.emit(Op.SLICE, [x], A.SliceAttrs(axis=2, start=i * dh, stop=i * dh + (rows - 1) * sh + 1, step=sh),
                          name=_part(b, node, f"rows{tag}"))
            part = b.emit(Op.SLICE, [part], A.SliceAttrs(axis=3, start=j * dw, stop=j * dw + (cols - 1) * sw + 1, step=sw),
                          name=_part(b, node, f"cols{tag}"))
            offsets.append(reshape_to(b, part, (n, c, 1, rows, cols), name=_part(b, node, f"at{tag}")))
    stacked = offsets[0] if len(offsets) == 1 else b.emit(Op.CONCAT, offsets, A.AxisAttrs(axis=2), name=_part(b, node, "offsets"))
    return reshape_to(b, stacked, (n, c * kh * kw, rows * cols))


def _pair(value: Any) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (list, tuple)) else (int(value), int(value))


@FUNCTIONS.register(f"{F}.unfold")
def im2col(b: Builder, node: torch.fx.Node) -> Any:
    """unfold(input, kernel_size, dilation=1, padding=0, stride=1)"""
    call = bind(b, node, ("input", "kernel_size", "dilation", "padding", "stride"))
    x = _tensor(b, node, call.get("input"), "input")
    return emit_im2col(b, node, x, call["kernel_size"], call.get("dilation", 1), call.get("padding", 0), call.get("stride", 1))


@MODULES.register(nn.Unfold)
def unfold_module(b: Builder, node: torch.fx.Node) -> str:
    """Unfold(kernel_size, dilation=1, padding=0, stride=1)"""
    m: nn.Unfold = b.module(node)  # type: ignore[assignment]
    return emit_im2col(b, node, _input(b, node), m.kernel_size, m.dilation, m.padding, m.stride)


def emit_col2im(
    b: Builder, node: torch.fx.Node, x: str, output_size: Any, kernel: Any, dilation: Any, padding: Any, stride: Any
) -> str:
    """F.fold / nn.Fold (col2im) of [N, C * kh * kw, L] into [N, C, H, W]: every window's entries summed
    back where they came from. The L entries of kernel offset (i, j) form an [oh, ow] grid that lands on
    rows i * dh - ph + y * sh and columns j * dw - pw + x * sw: the grid spread by the stride (zeros
    between its entries: a new axis padded and merged), moved to its offset (a pad, cropping where
    negative), and the kh * kw placed grids added."""
    shape = b.value(x).shape
    if len(shape) != 3:
        raise b.fail(f"{op_label(node)} is supported on a batched 3-d input [N, C * kh * kw, L], got shape {list(shape)}")
    height, width = _pair(output_size)
    kh, kw = _pair(kernel)
    dh, dw = _pair(dilation)
    ph, pw = _pair(padding)
    sh, sw = _pair(stride)
    rows = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    cols = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    n, blocks, length = shape
    if blocks % (kh * kw) or rows * cols != length:
        raise b.fail(f"{op_label(node)}: input {list(shape)} does not hold {kh}x{kw} windows of a {height}x{width} output")
    c = blocks // (kh * kw)
    grids = reshape_to(b, x, (n, c, kh * kw, rows, cols), name=_part(b, node, "grids"))
    pieces = b.emit(Op.SPLIT, [grids], A.SplitAttrs(axis=2, sizes=(1,) * (kh * kw)), outputs=kh * kw, name=_part(b, node, "offsets"))
    pieces = [pieces] if isinstance(pieces, str) else pieces
    placed = []
    for index, piece in enumerate(pieces):
        i, j = divmod(index, kw)
        grid = reshape_to(b, piece, (n, c, rows, cols), name=_part(b, node, f"grid{i}_{j}"))
        if sh > 1 or sw > 1:  # entry (y, x) to row y * sh, column x * sw, zeros between
            grid = reshape_to(b, grid, (n, c, rows, 1, cols, 1), name=_part(b, node, f"spread{i}_{j}"))
            grid = b.emit(Op.PAD, [grid], A.PadAttrs(pads=((0, 0), (0, 0), (0, 0), (0, sh - 1), (0, 0), (0, sw - 1))),
                          name=_part(b, node, f"gaps{i}_{j}"))
            grid = reshape_to(b, grid, (n, c, rows * sh, cols * sw), name=_part(b, node, f"spread{i}_{j}"))
        top, left = i * dh - ph, j * dw - pw
        bottom, right = height - top - rows * sh, width - left - cols * sw
        placed.append(emit_pad(b, node, grid, [left, right, top, bottom], "constant", 0.0))
    total = placed[0]
    for other in placed[1:]:
        total = b.emit(Op.ADD, [total, other], A.BinaryAttrs(), name=_part(b, node, "sum"))
    return total


@FUNCTIONS.register(f"{F}.fold")
def col2im(b: Builder, node: torch.fx.Node) -> Any:
    """fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1)"""
    call = bind(b, node, ("input", "output_size", "kernel_size", "dilation", "padding", "stride"))
    x = _tensor(b, node, call.get("input"), "input")
    return emit_col2im(b, node, x, call["output_size"], call["kernel_size"], call.get("dilation", 1), call.get("padding", 0),
                       call.get("stride", 1))


@MODULES.register(nn.Fold)
def fold_module(b: Builder, node: torch.fx.Node) -> str:
    """Fold(output_size, kernel_size, dilation=1, padding=0, stride=1)"""
    m: nn.Fold = b.module(node)  # type: ignore[assignment]
    return emit_col2im(b, node, _input(b, node), m.output_size, m.kernel_size, m.dilation, m.padding, m.stride)
