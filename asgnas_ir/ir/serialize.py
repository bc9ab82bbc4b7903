"""Saving and loading graphs: JSON for the structure, a safetensors sidecar for the weights.

Loading validates at the door: malformed JSON gives pydantic's error with the JSON path, a missing
or mismatched sidecar names the file and the param, so no later pass sees a broken graph.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from asgnas_ir.errors import IRValidationError
from asgnas_ir.ir.graph import SCHEMA_VERSION, Graph, contiguous


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".safetensors")


def save_graph(graph: Graph, path: Path) -> Path:
    """Write the graph JSON to `path` and its weights (if any) to the sidecar; returns `path`."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(graph.model_dump_json(indent=1))
    side = sidecar_path(path)
    if graph.weights:
        arrays = {name: contiguous(graph.weights[name]) for name in graph.params if name in graph.weights}
        save_file(arrays, str(side))
    elif side.exists():
        side.unlink()  # a stale sidecar from an earlier save would be attached to this graph on load
    return path


def load_graph(path: str | Path, *, weights: bool = True, require_weights: bool = False) -> Graph:
    """Read a graph saved by `Graph.save`, with its weights when the sidecar exists.

    `require_weights` (for callers that write weights out, like codegen) makes a missing sidecar
    an error naming it, instead of a structure-only graph.

    Raises:
        IRValidationError: the file is missing, not JSON, fails schema validation, the sidecar's
            arrays do not match the declared param shapes and dtypes, or it is required and missing.
    """
    path = Path(path)
    if not path.is_file():
        raise IRValidationError(f"IR file '{path}' does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise IRValidationError(
            f"'{path}' is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "was it truncated? Re-create it with `asgnas compile`."
        ) from None
    version = data.get("schema_version", SCHEMA_VERSION) if isinstance(data, dict) else SCHEMA_VERSION
    if not isinstance(version, int) or isinstance(version, bool):
        raise IRValidationError(f"'{path}': schema_version must be an integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise IRValidationError(
            f"'{path}' uses IR schema {data['schema_version']}, newer than this asgnas-ir "
            f"understands ({SCHEMA_VERSION}); upgrade asgnas-ir"
        )
    try:
        graph = Graph.model_validate(data)
    except ValidationError as exc:
        raise IRValidationError(f"'{path}' is not a valid asgnas-ir graph:\n{exc}") from None
    side = sidecar_path(path)
    if weights and side.is_file():
        graph.set_weights(_read_weights(graph, side))
    elif require_weights and graph.params:
        raise IRValidationError(
            f"'{path}' declares {len(graph.params)} params but its weights file '{side}' is missing; keep the "
            ".safetensors file beside the JSON (`asgnas compile` and `Graph.save` write both)"
        )
    return graph


def _read_weights(graph: Graph, side: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        arrays = load_file(str(side))
    except (SafetensorError, OSError, ValueError) as exc:
        raise IRValidationError(f"weights file '{side}' cannot be read ({exc}); it may be truncated") from None
    missing = [name for name in graph.params if name not in arrays]
    if missing:
        raise IRValidationError(
            f"weights file '{side}' lacks {len(missing)} param(s) the graph declares, e.g. "
            f"{', '.join(missing[:3])}; it belongs to a different graph"
        )
    for name, param in graph.params.items():
        if tuple(arrays[name].shape) != tuple(param.shape):
            raise IRValidationError(
                f"weights file '{side}': param '{name}' has shape {list(arrays[name].shape)} but the "
                f"graph declares {list(param.shape)}; the sidecar belongs to a different graph"
            )
        # numpy has no bfloat16: such params are stored widened, so only numpy-native dtypes are compared
        if param.dtype != "bfloat16" and str(arrays[name].dtype) != param.dtype:
            raise IRValidationError(
                f"weights file '{side}': param '{name}' is stored as {arrays[name].dtype} but the graph declares "
                f"{param.dtype}; the sidecar belongs to a different graph or was rewritten with another dtype"
            )
    return {name: arrays[name] for name in graph.params}
