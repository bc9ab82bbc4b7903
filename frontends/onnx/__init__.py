"""ONNX frontend: lower an onnx.ModelProto or .onnx file (or a torch module exported to ONNX) into the IR.

`lower_onnx` (driver.py) walks the ONNX graph with the converter table in ops.py; `lower_torch_onnx`
(export.py) exports a torch module with `torch.onnx.export` first and maps initializers back to
the module's parameter paths. Importing this package imports onnx, never torch.
"""

from asgnas_ir.frontends.onnx.driver import input_specs, load_onnx, lower_onnx

__all__ = ["input_specs", "load_onnx", "lower_onnx"]
