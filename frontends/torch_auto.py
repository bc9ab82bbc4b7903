"""`frontend="auto"` for PyTorch: the fx frontend first, the export-based path when fx cannot serve.

torch.fx traces Python symbolically, so it stops at data-dependent control flow (`if x.sum() > 0`,
a loop over a tensor's size) and its converter table covers only the modules, functions and tensor
methods it has entries for. `torch.onnx.export` traces with `torch.export` (concrete example
inputs, control flow resolved for them) down to ONNX's op set, which the ONNX frontend lowers; the
export is checked against the model in onnxruntime before anything is lowered from it
(`export._verify_export`). fx stays first because its graph keeps the model's own structure (module
paths, one node per layer) at a fraction of the export's cost.

NOTE: [Which path served] `graph.meta.frontend` says which path lowered the graph: "fx", or "onnx"
for the export path (the name a user passes as `frontend=` to take that path directly), and
`graph.meta.fallback_reason` holds the fx error that sent `auto` down the export path (None when fx
served, and for an explicit `frontend="onnx"`).

What sends `auto` on: any `AsgnasError` of the fx frontend but a `SpecError` (a bad argument is bad
on both paths). Trace failures and refused arguments are `FrontendError`s, missing converters an
`UnsupportedOpError`. Other exceptions are bugs of the fx frontend and propagate as they are.

With `on_unsupported="opaque"` both paths are first tried with `"error"`: a graph with no opaque
node from either path is worth more than one with opaque nodes, which pin every channel they touch.
Only when neither lowers everything does fx (if it traced) or else the export path keep the ops it
lacks as opaque nodes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asgnas_ir.errors import AsgnasError, ExampleInputError, FrontendError, SpecError, UnsupportedOpError

if TYPE_CHECKING:
    import torch

    from asgnas_ir.ir.graph import Graph

_ADVICE = (
    "Pass on_unsupported='opaque' (CLI: --on-unsupported opaque) to keep the ops neither path supports as opaque nodes (they pin the "
    "channels they touch), choose a path with frontend='fx' or frontend='onnx' to see its error alone, or "
    "report the model (its error above names what is missing)."
)


_CAUSE_CHARS = 600  # a trace error can quote a whole torch message; the start names the cause


def _first_line(exc: BaseException) -> str:
    """The error in one line without its closing period: for an UnsupportedOpError the ops it lacks
    (its own advice is the combined error's), for any other its message's lines joined."""
    if isinstance(exc, UnsupportedOpError):
        ops = ", ".join(f"{item.op} ({len(item.locations)}x, at {item.locations[0]})" if item.locations else item.op for item in exc.ops)
        text = f"no converter for {ops}"
    else:
        text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if len(text) > _CAUSE_CHARS:
        text = text[: _CAUSE_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {text.rstrip('.')}" if text else type(exc).__name__


def _lower_fx(model: torch.nn.Module, inputs: tuple, on_unsupported: str) -> Graph:
    from asgnas_ir.frontends.torch_fx import lower_torch_fx

    return lower_torch_fx(model, inputs, on_unsupported)


def _lower_export(model: torch.nn.Module, inputs: tuple, on_unsupported: str) -> Graph:
    from asgnas_ir.frontends.onnx.export import lower_torch_onnx

    return lower_torch_onnx(model, inputs, on_unsupported)


def _served_by_export(graph: Graph, fx_error: BaseException) -> Graph:
    graph.meta.fallback_reason = f"torch.fx: {_first_line(fx_error)}"
    return graph


def _combined(model: torch.nn.Module, fx_error: BaseException, export_error: BaseException) -> AsgnasError:
    """One error naming both causes, fx's first. An UnsupportedOpError when either path only lacked
    converters (opaque nodes would then serve), carrying that path's op list; a FrontendError otherwise."""
    # an fx op list is the most useful part (every op with where it occurs): kept whole
    fx_text = str(fx_error).split("\nPass on_unsupported")[0] if isinstance(fx_error, UnsupportedOpError) else _first_line(fx_error)
    message = (
        f"frontend='auto' cannot lower {type(model).__name__}: torch.fx: {fx_text}\n"
        f"then the export path (torch.onnx.export, then the ONNX frontend): {_first_line(export_error)}\n{_ADVICE}"
    )
    lacking = next((e for e in (fx_error, export_error) if isinstance(e, UnsupportedOpError)), None)
    if lacking is None:
        return FrontendError(message)
    error = UnsupportedOpError(lacking.frontend, list(lacking.ops))
    error.args = (message,)
    return error


def lower_torch_auto(model: torch.nn.Module, inputs: tuple, on_unsupported: str = "error") -> Graph:
    """Lower `model` with the fx frontend, or through `torch.onnx.export` when fx cannot trace or lower it.

    Args:
        model: the torch module.
        inputs: the example inputs, as a tuple.
        on_unsupported: `error` or `opaque` (see the module docstring for how `opaque` picks a path).

    Returns:
        The graph; `graph.meta.frontend` is "fx" or "onnx" and `graph.meta.fallback_reason` says why
        fx was not used (NOTE: [Which path served]).

    Raises:
        UnsupportedOpError / FrontendError: neither path lowers the model; the message gives fx's
            cause, then the export path's, then what to do.
    """
    try:
        return _lower_fx(model, inputs, "error")
    except (SpecError, ExampleInputError):
        raise  # a bad argument or example input is bad on both paths
    except AsgnasError as exc:
        fx_error = exc
    try:
        return _served_by_export(_lower_export(model, inputs, "error"), fx_error)
    except SpecError:
        raise
    except AsgnasError as exc:
        export_error = exc
    if on_unsupported == "opaque":
        # fx traced the model and only lacked converters: its opaque nodes sit where the model's own
        # calls are, which reads better than ONNX ops; otherwise the export path keeps its own
        if isinstance(fx_error, UnsupportedOpError):
            try:
                return _lower_fx(model, inputs, "opaque")
            except SpecError:
                raise
            except AsgnasError:
                pass  # its first error stays the one reported
        if isinstance(export_error, UnsupportedOpError):
            try:
                return _served_by_export(_lower_export(model, inputs, "opaque"), fx_error)
            except SpecError:
                raise
            except AsgnasError as exc:
                export_error = exc
    raise _combined(model, fx_error, export_error) from None
