"""codegen-onnx: write a graph as one self-contained `model.onnx` (ONNX opset 19, IR version 9, or a
newer ONNX source's own opset and IR version up to opset `MAX_OPSET`).

The model is built with onnx-ir, one emitter per op in `ONNX_EMITTERS` (the counterpart of
codegen-torch's `EMITTERS`). Naming, so that the file reads like the source model in Netron:
- every IR value keeps its name, with its static shape and dtype; graph inputs and outputs take the
  source model's own names back (`input.1`, `output:0`: `GraphMeta.io_names`);
- every param becomes an initializer named by its IR param name (`layer1.0.conv1.weight`), in the
  IR's own layout; a weight that ONNX wants in another layout (a linear weight for MatMul, a
  GroupNorm scale as [C, 1, 1]) goes through a Transpose/Unsqueeze node that runtimes fold;
- the ONNX node that produces an IR node's output is named by the IR node id, and the helper nodes
  and constants of a decomposition by `<node id>/<what>` (`attn/scores`); every node's doc string
  names the op and its source layer.

Opset 19 is the lowest with everything used here: Pad mode `wrap` (circular padding), ReduceMean's
`axes` input (18) and LayerNormalization (17). Ops ONNX has no exact single node for are
decomposed: gelu (Erf or the tanh formula), silu, mish, group norm (InstanceNormalization over
[N, G, -1]), batch norm without running statistics, attention (MatMul, Transpose, Mul, Add,
Softmax, MatMul; the causal mask is a constant initializer). Dropout is the identity (inference).
Refused with a CodegenError naming the node: opaque ops, adaptive pools whose windows are not one
regular pool, and channels-last convs/pools (the Keras layout; ONNX's forms are channels-first).

The printer and the table live in `_onnx_printer.py`, the emitters in one module per op family
(`onnx_emitters_conv`, `_linear_norm`, `_elementwise`, `_attention`, `_shape`, mirroring
`asgnas_ir.opdefs`); importing this module imports them all, so the table is complete and the pass
registered. Every name callers imported from here before the split is still importable here.

onnx-ir is imported when a model is built, never at `import asgnas_ir`, so the table and the pass
register without onnx installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from asgnas_ir.ir.graph import Graph
from asgnas_ir.pass_manager import Pass, register_pass
from asgnas_ir.passes.codegen import (  # noqa: F401  (registration: each family fills ONNX_EMITTERS)
    onnx_emitters_attention,
    onnx_emitters_conv,
    onnx_emitters_elementwise,
    onnx_emitters_linear_norm,
    onnx_emitters_resample,
    onnx_emitters_shape,
)
from asgnas_ir.passes.codegen._onnx_printer import (  # noqa: F401  (re-exported: imported from here)
    IR_VERSION,
    MAX_OPSET,
    ONNX_EMITTERS,
    OPSET,
    Emitter,
    OnnxPrinter,
    _onnx_ir,
    emits,
)
from asgnas_ir.passes.codegen.onnx_emitters_conv import adaptive_window  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    import onnx_ir as ir

MODEL_FILE = "model.onnx"


def generate_onnx(graph: Graph) -> ir.Model:
    """The ONNX model (onnx-ir) of `graph`."""
    return OnnxPrinter(graph).build()


def write_onnx(graph: Graph, out_dir: str | Path) -> list[Path]:
    """Write `out_dir/model.onnx` (weights inline) and return its path in a list."""
    ir_ = _onnx_ir()
    model = generate_onnx(graph)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / MODEL_FILE
    ir_.save(model, path)
    return [path]


@register_pass
class CodegenOnnx(Pass):
    name = "codegen-onnx"
    description = (
        f"Write the graph as one ONNX model (model.onnx, opset {OPSET} or an ONNX source's own up to {MAX_OPSET}) "
        "with the weights as named initializers."
    )
    kind = "codegen"
    requires = ("verify",)

    def run(self, graph: Graph, out_dir: str | Path = "generated") -> list[Path]:
        return write_onnx(graph, out_dir)
