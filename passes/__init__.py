"""All passes; importing this package registers each of them with the pass manager."""

from asgnas_ir.passes.analysis import cost, dependency_graph, search_space, shape_inference, verify  # noqa: F401
from asgnas_ir.passes.codegen import keras_codegen, onnx_codegen, torch_codegen  # noqa: F401
from asgnas_ir.passes.transform import subnet  # noqa: F401
from asgnas_ir.passes.visualize import visualize  # noqa: F401
