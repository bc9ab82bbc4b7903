"""codegen-keras: write a graph as one readable Keras 3 file (`model.py`) plus `weights.safetensors`.

The file defines `build() -> keras.Model`, a Functional model with one `keras.Input(shape=...)`
(batch left symbolic) per graph input and one line per op: `keras.layers` named after the source layers
(`layer1.0.conv1` → `layer1_0_conv1`) for ops with weights, pools and padding, `keras.ops` for
functional ops, literal shapes except the batch (`_batch`: a reshape keeping it writes -1). `load(path=None)` builds it and assigns every variable
from `weights.safetensors` (read with `safetensors.numpy.load_file`, no pickle) by its path,
`<layer name>/<variable>`. The file imports keras and safetensors, never asgnas-ir; this module
only writes text and never imports keras or tensorflow. Output is deterministic.

Layout (see `_keras_printer` and docs/design-notes.md, "codegen-keras"): the generated model takes
and returns the source model's layout. For a channels-first graph (torch, ONNX) convolutions,
pools and spatial norms run channels-last, each value transposed at most once per layout, and axis
attributes are remapped; reshape and flatten see the source element order.

The printer and table live in `_keras_printer.py`, the emitters in one module per op family
(`keras_emitters_conv`, `_linear_norm`, `_elementwise`, `_attention`, `_shape`); importing this
module imports them all, so the table is complete and the pass registered.
"""

from __future__ import annotations

from pathlib import Path

from asgnas_ir.ir.graph import Graph
from asgnas_ir.pass_manager import Pass, register_pass
from asgnas_ir.passes.codegen import (  # noqa: F401  (registration: each family fills KERAS_EMITTERS)
    keras_emitters_attention,
    keras_emitters_conv,
    keras_emitters_elementwise,
    keras_emitters_linear_norm,
    keras_emitters_resample,
    keras_emitters_shape,
)
from asgnas_ir.passes.codegen._keras_printer import KERAS_EMITTERS, Emitter, KerasPrinter, emits  # noqa: F401
from asgnas_ir.passes.codegen._printer import GeneratedCode, formatted


def generate_keras(graph: Graph) -> GeneratedCode:
    """Print `graph` as `model.py` and collect the variables for `weights.safetensors`."""
    printer = KerasPrinter(graph)
    text = formatted(printer.print(), "model.py")
    return GeneratedCode(files={"model.py": text}, weights=printer.weights, always_write_weights=True)


@register_pass
class CodegenKeras(Pass):
    name = "codegen-keras"
    description = "Write the graph as one readable Keras 3 file (model.py, a Functional model) plus weights.safetensors."
    kind = "codegen"
    requires = ("verify",)

    def run(self, graph: Graph, out_dir: str | Path = "generated") -> list[Path]:
        return generate_keras(graph).write(out_dir)
