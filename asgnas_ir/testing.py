"""Helpers for tests of asgnas-ir and of code built on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asgnas_ir.ir.graph import Graph
from asgnas_ir.spec import import_file


def load_generated(folder: str | Path, device: Any = None) -> Any:
    """The model that `folder/model.py` (written by codegen-torch) builds, with its weights, in eval mode,
    on `device` (None: torch's default device, where `load()` alone would put it).

    With a device, the module is built inside `torch.device(device)`: its parameters are created where
    they will live (no CPU copy of a large model first), whatever default device the caller set."""
    import torch

    folder = Path(folder)
    module = import_file(folder / "model.py", "asgnas_generated")
    if device is None:
        return module.load(folder / "weights.safetensors")
    with torch.device(device):
        return module.load(folder / "weights.safetensors")


def emit_and_load(graph: Graph, folder: str | Path) -> Any:
    """Generate PyTorch code for `graph` into `folder` and return the loaded model."""
    from asgnas_ir.api import codegen

    codegen(graph, target="torch", out_dir=folder)
    return load_generated(folder)


def run_torch(model_or_folder: Any, inputs: Any) -> list[Any]:
    """Outputs (a list of numpy arrays) of a generated PyTorch model, or of the one in a codegen-torch
    folder (loaded on the device of the first input tensor), on `inputs` (numpy arrays or torch
    tensors, in the order of the model's inputs), without autograd."""
    import numpy as np
    import torch

    from asgnas_ir.backends.torch.binding import device_of, run_model

    if isinstance(inputs, np.ndarray) or hasattr(inputs, "numpy"):
        inputs = [inputs]
    tensors = tuple(x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x)) for x in inputs)
    if isinstance(model_or_folder, (str, Path)):
        model = load_generated(model_or_folder, device_of(tensors))
    else:
        model = model_or_folder
    with torch.no_grad():
        return run_model(model, tensors)


def run_onnx(path: str | Path, inputs: Any) -> list[Any]:
    """Run the ONNX model at `path` in onnxruntime (CPU): numpy arrays in, in the order of the model's
    inputs (a single array or a sequence), and the list of numpy outputs out. Torch tensors are
    accepted too and converted with `.numpy()`."""
    import numpy as np
    import onnxruntime as ort

    if isinstance(inputs, np.ndarray) or hasattr(inputs, "numpy"):
        inputs = [inputs]
    arrays = [np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x) for x in inputs]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(arrays):
        raise ValueError(f"{path} takes {len(names)} input(s) ({', '.join(names)}), got {len(arrays)}")
    return list(session.run(None, dict(zip(names, arrays, strict=True))))


def load_generated_keras(folder: str | Path) -> Any:
    """The Keras model that `folder/model.py` (written by codegen-keras) builds, with its weights."""
    folder = Path(folder)
    module = import_file(folder / "model.py", "asgnas_generated_keras")
    return module.load(folder / "weights.safetensors")


def run_keras(model_or_folder: Any, inputs: Any) -> list[Any]:
    """Outputs (a list of numpy arrays; a dict of outputs by sorted key, as the IR orders them) of a
    generated Keras model, or of the one in a codegen-keras folder, on `inputs` (numpy arrays or torch
    tensors, in the order of the model's inputs)."""
    import numpy as np

    model = load_generated_keras(model_or_folder) if isinstance(model_or_folder, (str, Path)) else model_or_folder
    if isinstance(inputs, np.ndarray) or hasattr(inputs, "numpy"):
        inputs = [inputs]
    from asgnas_ir.ir.weights import tensor_array

    # a bfloat16 tensor arrives widened to float32; the generated model's Input casts it back exactly
    arrays = [np.asarray(tensor_array(x) if hasattr(x, "detach") else x) for x in inputs]
    import keras

    outputs = model(arrays[0] if len(arrays) == 1 else arrays, training=False)
    # a dict of outputs (from a dict-output source model) in sorted-key order, the IR's output order
    return [np.asarray(o) for o in keras.tree.flatten(outputs)]


def assert_outputs_match(actual: Any, expected: Any, dtypes: Any = None) -> None:
    """Assert DESIGN §4's equivalence of two models' outputs: each output within the DESIGN tolerance
    of its own max |reference| (tensors, arrays, or sequences of them; `dtypes` the model's output
    dtypes where numpy cannot tell, e.g. bfloat16). Use it wherever the two sides may sum in different
    orders (other kernels, fewer channels, another thread count): an absolute atol there is a guess."""
    from asgnas_ir.api import compare_outputs, worst_output
    from asgnas_ir.ir.weights import tensor_array

    def arrays(value: Any) -> list[Any]:
        import numpy as np

        if isinstance(value, (list, tuple)):
            return [a for item in value for a in arrays(item)]
        return [tensor_array(value) if hasattr(value, "detach") else np.asarray(value)]

    found = compare_outputs(arrays(expected), arrays(actual), dtypes)
    if not all(c.ok for c in found):
        raise AssertionError(worst_output(found).problem)


def one_line(source: str) -> str:
    """Generated source with every statement on one line (whitespace collapsed, no line breaks inside
    brackets, no magic trailing commas), so tests can look for a call whatever `ruff format` did."""
    import re

    text = re.sub(r"\s+", " ", source)
    text = re.sub(r"([(\[{]) ", r"\1", text)
    return re.sub(r",? ([)\]}])", r"\1", text)
