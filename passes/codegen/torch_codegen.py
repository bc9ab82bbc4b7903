"""codegen-torch: write a graph as one readable PyTorch file plus `weights.safetensors`.

The file defines an `nn.Module` that nests like the source (`self.layer1[0].conv1`, every param
under the source's state_dict key; `_torch_tree.py`), one class per repeated block structure whose
constructor takes the pruned widths (`_torch_blocks.py`), literal sizes, `forward`s with one line
per op, and `load()` that reads the weights beside it; the text is `ruff format`ted. It imports only torch and safetensors, never asgnas-ir, and never
unpickles anything. A layer called twice in the source (shared weights) is one attribute called
twice; the same weights called with other settings (TridentNet: one conv at several dilations) are
the functional form on that attribute's params (`F.conv2d(x, self.branch.weight, ...)`), so the
state_dict holds them once. Layers are built in their params' dtype (`dtype=torch.float16`), as
`load_state_dict` would otherwise round float64 weights into float32 layers without a word. A
layer of a Keras mixed-precision policy (float32 params, float16 values; `cast` nodes around it)
is built in its compute dtype: its weights are rounded once at load to what Keras' autocast reads.
Output is deterministic: the same graph gives the same bytes.

Batch size: a reshape that keeps its input's batch at axis 0 (`_batch`: the graph inputs' axis 0,
followed through the ops that keep it) is printed with `x.shape[0]`, so the generated model accepts
any batch size, not just the example's.

Layout: inputs and outputs keep the source model's layout. A channels-last graph (from Keras) holds
each value in a physical layout (`_layout.py`, as codegen-keras does the other way round): conv,
pools and batch/group/instance norm want the channel axis at 1 and get their input through one
cached `permute` per value; elementwise ops, concat, split, slice, pad, softmax and mean/sum keep the
layout they get and remap their axes; reshape, flatten, linear, layer norm, matmul, attention and the
graph outputs read the logical (source) layout. A channels-first graph needs no permutes at all.

Deployment: `load(path=None, *, device=None, dtype=None, channels_last=False)`. `dtype` casts every
floating param and buffer; values the code builds at a named dtype (`TorchPrinter.origin`: sized
constants, casts) keep it and are cast once where they meet the activations (`follow_dtype`), so a
bfloat16 Llama computes its rotary angles in float32 as the source does. `channels_last` stores 4-D
weights NHWC and sets a flag that converts the image inputs once at the top of forward; a model
without a 2-D convolution (or with a 3-D one) refuses it by name. Generated forwards have no
data-dependent Python (`.item()`, branches on values), so `torch.compile(fullgraph=True)` takes
them whole.
"""

from __future__ import annotations

from pathlib import Path

from asgnas_ir.ir.graph import Graph
from asgnas_ir.pass_manager import Pass, register_pass
from asgnas_ir.passes.codegen import torch_emitters_layers, torch_emitters_shape  # noqa: F401  (registration)
from asgnas_ir.passes.codegen._printer import GeneratedCode, formatted
from asgnas_ir.passes.codegen._torch_printer import EMITTERS, TorchPrinter, class_name  # noqa: F401  (public names)


def generate_torch(graph: Graph) -> GeneratedCode:
    """Print `graph` as `model.py` and collect the state dict for `weights.safetensors`."""
    printer = TorchPrinter(graph)
    text = formatted(printer.print(), "model.py")
    return GeneratedCode(files={"model.py": text}, weights=printer.weights, always_write_weights=True)


@register_pass
class CodegenTorch(Pass):
    name = "codegen-torch"
    description = "Write the graph as one readable PyTorch file (model.py) plus weights.safetensors."
    kind = "codegen"
    requires = ("verify",)

    def run(self, graph: Graph, out_dir: str | Path = "generated") -> list[Path]:
        return generate_torch(graph).write(out_dir)
