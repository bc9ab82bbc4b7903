"""The fx-independent PyTorch path: export with `torch.onnx.export`, then lower the ONNX graph.

The export keeps the weights recognisable: the model is exported in eval mode without the
exporter's optimizer (which would fuse BatchNorm into the preceding conv) and without constant
folding, so every torch parameter and buffer stays an initializer. The dynamo exporter names
initializers by their torch path; the TorchScript exporter (the fallback when dynamo fails) may
not, so initializers are also matched to torch tensors by content (directly or, for a 2-d matrix,
transposed). `Param.source` is then the torch path and `binding.live_tensors` binds the IR to the
live model exactly as it does for the fx frontend.

The batch, and the sequence length of token ids, are exported dynamic where the model lets them
vary (`_dynamic_axes`): what the model computes from its input's sizes (position ids, causal masks,
rotary tables) then stays computed from them, which the ONNX frontend keeps rebuildable at other
sizes (NOTE: [Sized constants] in `sized.py`). A Hugging Face transformers model is exported through
the adapter of `hf.py` (no cache, its output's tensors as a tuple), under its own parameter paths.
The dynamo exporter records on each ONNX node the modules whose forwards made it; the driver keeps
them as `GraphMeta.scopes` / `modules` under the same paths (the adapter's prefix taken off), so
generated torch code nests like the model. The TorchScript fallback records none: both stay empty.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from asgnas_ir.errors import AsgnasError, FrontendError
from asgnas_ir.frontends.onnx.hf import export_view, model_name, strip_prefix
from asgnas_ir.ir.graph import Graph

OPSET = 20


def _dynamo_export(model: torch.nn.Module, inputs: tuple, dynamic_shapes: tuple | None = None) -> onnx.ModelProto:
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        # torch.export prints the graph it gave up on to stderr; the reason is in the warning the caller gives
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, inputs, dynamo=True, optimize=False, verbose=False, report=False, opset_version=OPSET,
                dynamic_shapes=dynamic_shapes,
            )
        return program.model_proto
    finally:
        quiet.setLevel(level)


def _dynamic_axes(x: torch.Tensor) -> dict[int, object]:
    """The axes exported dynamic: the batch, and the sequence length of token ids (axis 1 of an
    integer input of rank >= 2, as `frontends/_symbolic.py` counts it). A causal mask or rotary
    table is then computed from the input's length (Shape, Range) rather than written as the
    example's constant, which the ONNX frontend can keep at run time. `Dim.AUTO` lets torch.export
    fix an axis the model does not let vary (a learned position table read whole)."""
    axes: dict[int, object] = {0: torch.export.Dim.AUTO}
    if x.dim() >= 2 and not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool:
        axes[1] = torch.export.Dim.AUTO
    return axes


def _batch_dynamic(model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> onnx.ModelProto | None:
    """The export with the batch (axis 0 of every input) left dynamic, or None where it stays fixed.

    A static export writes the example's batch into every shape it computes (ViT's class token
    expanded to [1, 1, D], reshapes to [1, ...]): lowered at another batch the graph then differs in
    constants no rule relates, and its dims cannot be found symbolic (`frontends/_symbolic.py`). With
    a dynamic batch those shapes are computed from the input's, as the model computes them. torch.export
    fixes every dim of size 1, so a batch of 1 is exported at 2 (the rows repeated)."""
    if not example_inputs or any(not isinstance(x, torch.Tensor) or x.dim() == 0 for x in example_inputs):
        return None
    inputs = tuple(torch.cat([x, x]) if x.shape[0] == 1 else x for x in example_inputs)
    proto = _dynamo_export(model, inputs, tuple(_dynamic_axes(x) for x in inputs))
    for item in proto.graph.input:
        dims = item.type.tensor_type.shape.dim
        if not dims or not dims[0].HasField("dim_param"):
            return None  # the model fixes its batch: export it at the example's own shapes
    return proto


def export_torch(model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> onnx.ModelProto:
    """Export `model` (already in eval mode) to ONNX with a dynamic batch where the model allows it,
    else at the example's shapes; falls back to the TorchScript exporter with a warning."""
    try:
        proto = _batch_dynamic(model, example_inputs)
    except Exception as exc:  # noqa: BLE001  (the exporter raises many types)
        proto, dynamic_error = None, exc
    else:
        dynamic_error = None
    if proto is not None:
        return proto
    root = getattr(dynamic_error, "__cause__", None) or dynamic_error
    if "DataDependent" in type(root).__name__:
        reason = _summary(dynamic_error)  # a branch on a tensor's value: the static export stops at it too
    else:
        try:
            return _dynamo_export(model, example_inputs)
        except Exception as dynamo_exc:  # noqa: BLE001  (the exporter raises many types)
            reason = _summary(dynamo_exc)
    warnings.warn(
        f"torch.onnx.export(dynamo=True) failed for {model_name(model)} ({reason}); "
        "falling back to the TorchScript exporter (dynamo=False)",
        stacklevel=3,
    )
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.onnx.export(
                model, example_inputs, buffer, dynamo=False, opset_version=OPSET, do_constant_folding=False,
                training=torch.onnx.TrainingMode.PRESERVE, export_params=True, keep_initializers_as_inputs=False,
            )
    except Exception as exc:  # noqa: BLE001
        raise FrontendError(
            f"torch.onnx.export cannot export {model_name(model)}: dynamo: {reason}; "
            f"TorchScript: {type(exc).__name__}: {exc}"
        ) from None
    _warn_specialised(model, caught)
    return onnx.load_from_string(buffer.getvalue())


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _summary(exc: BaseException) -> str:
    """The exporter's error in one line: torch.onnx wraps torch.export's error (the cause worth
    reading, such as a guard on a data-dependent value) in a generic one with terminal colours."""
    root = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
    lines = [line.strip() for line in _ANSI.sub("", str(root)).splitlines() if line.strip()]
    return f"{type(root).__name__}: {lines[0] if lines else ''}"[:400]


def _warn_specialised(model: torch.nn.Module, caught: list[warnings.WarningMessage]) -> None:
    """One warning when the TorchScript tracer saw Python read tensor values.

    It records only what they were for the example inputs (`if x.sum() > 0` takes one branch, a loop
    bound read from a tensor one count), so the exported graph, and everything lowered and generated
    from it, computes the model only for inputs where they are the same. Its own TracerWarnings say
    so one line each, deep in torch; this says it once, naming the model."""
    tracer = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    if not tracer:
        return
    first = str(tracer[0].message).splitlines()[0]
    where = f"{Path(tracer[0].filename).name}:{tracer[0].lineno}"
    warnings.warn(
        f"the TorchScript exporter saw {model_name(model)} read {len(tracer)} tensor value(s) in Python (first at "
        f"{where}: {first}); the exported graph fixes what they were for the example inputs (a branch taken, a "
        "loop count), so it is wrong for inputs where they differ",
        stacklevel=4,
    )


def _flat_tensors(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _flat_tensors(item)]
    return []


def host_array(tensor: torch.Tensor) -> np.ndarray:
    """`tensor` as a numpy array on the host, its dtype kept: a bfloat16 tensor becomes an ml_dtypes
    bfloat16 array (the type onnx and onnxruntime use for it), where `.numpy()` refuses the dtype."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def _verify_export(model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], proto: onnx.ModelProto) -> None:
    """Refuse an export that does not compute what the model computes on the example inputs.

    The exporter is a second implementation of every op, and it has dropped arguments without a word
    (`avg_pool2d(..., divisor_override=k)` exports as a plain AveragePool): everything lowered from such
    a graph, the generated code included, would then be wrong at fraction 0. One run in onnxruntime
    against the model itself catches that class of bug at compile time, whatever the op.
    """
    import tempfile

    from asgnas_ir.frontends.onnx.reference import run_checked
    from asgnas_ir.tolerance import tolerance

    if proto.ByteSize() > 1_500_000_000:  # beyond protobuf's limit for one file: no cheap second run
        return
    expected = _flat_tensors(model(*example_inputs))
    with tempfile.TemporaryDirectory(prefix="asgnas-export-") as tmp:
        path = Path(tmp) / "exported.onnx"
        onnx.save(proto, str(path))
        try:
            actual = run_checked(path, [host_array(x) for x in example_inputs], f"the ONNX export of {model_name(model)}")
        except AsgnasError:
            # onnxruntime refuses some valid exports (ConvTranspose with output_padding >= stride): they
            # cannot be cross-checked here, and `check` still compares the generated code with torch
            return
    if len(actual) != len(expected):
        raise FrontendError(
            f"torch.onnx.export of {model_name(model)} has {len(actual)} output(s), the model returns {len(expected)}; "
            "use frontend='fx'"
        )
    for index, (reference, exported) in enumerate(zip(expected, actual, strict=True)):
        if not reference.is_floating_point():
            continue
        ref = reference.detach().float().cpu().numpy()
        diff = float(np.abs(ref - np.asarray(exported, dtype=np.float32)).max(initial=0.0)) if ref.size else 0.0
        max_ref = float(np.abs(ref).max(initial=0.0))
        # a 10x margin over check's tolerance: the export may round differently (fused kernels), it
        # must not compute something else
        if diff > 10 * tolerance(max_ref, str(reference.dtype).removeprefix("torch.")) and diff > 1e-6:
            raise FrontendError(
                f"torch.onnx.export of {model_name(model)} does not compute what the model computes: output "
                f"{index} differs by {diff:.3g} (max |output| {max_ref:.3g}) on the example inputs. The exporter "
                "mis-translated an op (for example avg_pool with divisor_override); use frontend='fx'"
            )


def source_names(model: torch.nn.Module, proto: onnx.ModelProto) -> dict[str, str]:
    """Initializer name -> torch parameter/buffer path, by name first, then by content."""
    tensors = dict(model.named_buffers())
    tensors.update(dict(model.named_parameters(remove_duplicate=False)))
    by_content: dict[tuple, str] = {}
    for path, tensor in tensors.items():
        array = host_array(tensor)
        by_content.setdefault((array.shape, str(array.dtype), array.tobytes()), path)
    mapping: dict[str, str] = {}
    for init in proto.graph.initializer:
        if init.name in tensors:
            mapping[init.name] = init.name
            continue
        array = numpy_helper.to_array(init)
        key = (array.shape, str(array.dtype), np.ascontiguousarray(array).tobytes())
        if key in by_content and array.size > 1:
            mapping[init.name] = by_content[key]
    return mapping


def lower_torch_onnx(model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], on_unsupported: str = "error") -> Graph:
    """Lower `model` through `torch.onnx.export`: params keep their torch paths as `source`."""
    from asgnas_ir.frontends.onnx.driver import lower_onnx

    # export in eval mode, then put every submodule's own `training` flag back (a frozen BatchNorm
    # in a training model, a dropout left in train mode): `model.train(was)` would overwrite them all
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    # a transformers model is exported through an adapter (no cache, a tuple of tensors out), its
    # parameter paths prefixed by the adapter's attribute: taken off again for `Param.source`
    exported, prefix = export_view(model, len(example_inputs))
    try:
        with torch.no_grad():
            proto = export_torch(exported, example_inputs)
            _verify_export(exported, example_inputs, proto)
        names = strip_prefix(source_names(exported, proto), prefix)
        trainable = {path: bool(p.requires_grad) for path, p in model.named_parameters(remove_duplicate=False)}
        trainable.update({path: False for path, _ in model.named_buffers()})
        graph = lower_onnx(
            proto, example_inputs, on_unsupported, source_names=names, trainable=trainable,
            framework="torch", name=model_name(model), module_prefix=prefix,
        )
    finally:
        for module, training in flags:
            if module.training is not training:
                module.training = training
    graph.meta.versions["torch"] = torch.__version__
    # what the exporter folded or the model holds outside its state_dict (a causal mask, a rotary
    # `inv_freq` registered with persistent=False): generated code keeps those out of its state_dict
    graph.meta.computed = sorted({p.source for p in graph.params.values()} - set(model.state_dict()))
    return graph
