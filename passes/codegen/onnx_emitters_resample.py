"""codegen-onnx emitters for resampling, running sums and the max reduction (`asgnas_ir.opdefs.resample`).

`Resize` takes the resized axes through its `axes` attribute (opset 18), with the source's scale
factors where it gave them (ONNX then maps coordinates by 1 / scale, as torch does) or the output
sizes. Coordinate rules as torch's: nearest is `asymmetric` with `floor`; linear and cubic are
`pytorch_half_pixel` (or `align_corners`), cubic with torch's a = -0.75.
"""

from __future__ import annotations

import numpy as np

from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.passes.codegen._onnx_printer import OnnxPrinter, emits


@emits(Op.MAX)
def _max(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.ReduceAttrs = node.attrs  # type: ignore[assignment]
    p.out(node, "ReduceMax", [p.x(node), p.ints(node, "axes", attrs.axes)], keepdims=1 if attrs.keepdim else 0)


@emits(Op.CUMSUM)
def _cumsum(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "CumSum", [p.x(node), p.const(node, "axis", node.attrs.axis, np.int64)])  # type: ignore[attr-defined]


@emits(Op.RESIZE)
def _resize(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.ResizeAttrs = node.attrs  # type: ignore[assignment]
    common = {"axes": attrs.axes, "mode": attrs.mode}
    if attrs.mode == "nearest":
        common.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:
        common["coordinate_transformation_mode"] = "align_corners" if attrs.align_corners else "pytorch_half_pixel"
        if attrs.mode == "cubic":
            common["cubic_coeff_a"] = -0.75
    if attrs.scale is not None:
        scales = p.const(node, "scales", list(attrs.scale), np.float32)
        p.out(node, "Resize", [p.x(node), None, scales], **common)
    else:
        p.out(node, "Resize", [p.x(node), None, None, p.ints(node, "sizes", attrs.size)], **common)
