"""The graph: values, params, nodes in topological order, and the weights beside them.

NOTE: [Weights live beside the JSON] The pydantic model is the whole structure and serialises to
JSON; the arrays are kept in `Graph.weights` (param name → numpy array) and saved as a
`<name>.safetensors` sidecar. A graph without weights is still valid for every analysis pass; only
subnet weight slicing and codegen's weight file need them.

NOTE: [Derived indices] Producer/user maps and the node index are caches keyed by `version`,
which every in-place mutation must bump through `touch()`. Passes that transform a graph are
functional: they build a new Graph, so the full network and its sub-network coexist.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from asgnas_ir.ir.node import AnyNode, NodeBase
from asgnas_ir.ir.weights import WeightStore, as_array, read_live_weights, shape_of

if TYPE_CHECKING:
    from collections.abc import Iterator

SCHEMA_VERSION = 1

DTYPE_SHORT = {
    "float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16",
    "int64": "i64", "int32": "i32", "int8": "i8", "uint8": "u8", "bool": "bool",
}


class Value(BaseModel):
    """A tensor flowing between nodes.

    `channel_axis` is the axis whose entries are channels/features that structured pruning may
    remove (NCHW → 1, NHWC → 3, [N, F] → 1); None for values without one (integer ids, scalars).
    Passes ask for it instead of hard-coding an index, so the same pass serves both layouts.

    `shape` holds the example's sizes; `dims`, when set, says per axis which of them are symbolic:
    an expression in the graph's symbols (`N`, `S`, `64*N`, `S+1`, see `asgnas_ir.ir.symbolic`) where
    the size follows the batch or the sequence length, the same int as `shape` elsewhere.
    """

    model_config = ConfigDict(extra="forbid")

    shape: tuple[int, ...]
    dtype: str = "float32"
    channel_axis: int | None = None
    dims: tuple[int | str, ...] | None = None

    @model_validator(mode="after")
    def _dims_match_shape(self) -> Value:
        if self.dims is None:
            return self
        if len(self.dims) != len(self.shape):
            raise ValueError(f"dims {list(self.dims)} and shape {list(self.shape)} differ in rank")
        for axis, (dim, size) in enumerate(zip(self.dims, self.shape, strict=True)):
            if isinstance(dim, int) and dim != size:
                raise ValueError(f"axis {axis}: static dim {dim} but the shape says {size}")
            if isinstance(dim, str):
                from asgnas_ir.ir.symbolic import parse

                parse(dim)
        return self

    @property
    def symbolic(self) -> tuple[int | str, ...]:
        """The shape with symbolic dims as their expressions (the plain shape when none is)."""
        return self.dims if self.dims is not None else self.shape

    def with_shape(self, shape: tuple[int, ...]) -> Value:
        """A copy with new sizes on the static axes (slicing channels); symbolic axes keep their names."""
        if self.dims is None:
            return self.model_copy(update={"shape": tuple(shape)})
        dims = tuple(d if isinstance(d, str) else size for d, size in zip(self.dims, shape, strict=True))
        return self.model_copy(update={"shape": tuple(shape), "dims": dims})

    def text(self) -> str:
        dims = ",".join(str(d) for d in self.symbolic)
        axis = "" if self.channel_axis is None else f"c{self.channel_axis}"
        return f"{DTYPE_SHORT.get(self.dtype, self.dtype)}[{dims}]{axis}"


class Param(BaseModel):
    """A weight or buffer.

    `source` is the path in the source framework (``layer1.0.conv1.weight``, ``conv2d_3/kernel``)
    used to bind the IR back to the live model. `axes` names each axis: O/I for output/input
    channels, C for a per-channel vector, other letters for kernel or feature axes.
    """

    model_config = ConfigDict(extra="forbid")

    shape: tuple[int, ...]
    dtype: str = "float32"
    source: str
    axes: str | None = None
    trainable: bool = True

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


class GraphMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    framework: str = ""
    frontend: str = ""
    model_name: str = ""
    layout: str = "channels_first"
    output_kind: str = "single"  # "tuple" when the source model returned a tuple of tensors
    versions: dict[str, str] = Field(default_factory=dict)
    # graph input/output value -> the source model's own name for it, where the two differ (an ONNX
    # name such as `input.1` or `output:0`); codegen-onnx writes the source's names back
    io_names: dict[str, str] = Field(default_factory=dict)
    # the example's size of each symbol the values' dims use ({"N": 1, "S": 16}); empty when the
    # frontend could not vary the inputs, and then `static_reason` says why (DESIGN §2)
    symbols: dict[str, int] = Field(default_factory=dict)
    static_reason: str = ""
    # why frontend="auto" did not lower with its first choice (for torch: the fx error that sent it
    # down the export path, `frontends/torch_auto.py`); None when the first choice served
    fallback_reason: str | None = None
    # the source's module hierarchy, for generated code that nests like the source (codegen-torch):
    # node id -> the path of the innermost module whose forward made it ("layer1.0" for a residual
    # add, "layer1.0.conv1" for the conv), and module path -> its class name ("Bottleneck",
    # "Sequential"). Empty for frontends that cannot see the modules; codegen then writes one class.
    scopes: dict[str, str] = Field(default_factory=dict)
    modules: dict[str, str] = Field(default_factory=dict)
    # param sources that are no key of the source's state_dict: tensors its forward computes or holds
    # as plain attributes (Swin's shift mask, fx's `_tensor_constant0`); generated code keeps them out
    # of its state_dict too (non-persistent buffers that `load()` fills)
    computed: list[str] = Field(default_factory=list)


class Graph(BaseModel):
    """A framework-neutral dataflow graph with nodes in topological order."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    name: str = "model"
    inputs: list[str]
    outputs: list[str]
    values: dict[str, Value]
    params: dict[str, Param] = Field(default_factory=dict)
    nodes: list[AnyNode]
    meta: GraphMeta = Field(default_factory=GraphMeta)

    _weights: Mapping[str, np.ndarray] = PrivateAttr(default_factory=dict)
    _version: int = PrivateAttr(default=0)
    _index_version: int = PrivateAttr(default=-1)
    _producers: dict[str, tuple[NodeBase, int]] = PrivateAttr(default_factory=dict)
    _users: dict[str, list[NodeBase]] = PrivateAttr(default_factory=dict)
    _by_id: dict[str, NodeBase] = PrivateAttr(default_factory=dict)
    _cache: dict[tuple, Any] = PrivateAttr(default_factory=dict)

    # ---- weights ---------------------------------------------------------------------------
    @property
    def weights(self) -> Mapping[str, np.ndarray]:
        """Param name → numpy array (see NOTE: [Weights live beside the JSON])."""
        return self._weights

    @property
    def has_weights(self) -> bool:
        return bool(self._weights) and all(name in self._weights for name in self.params)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        # a WeightStore is kept as it is, so arrays not read yet stay unread (NOTE: [Deferred weight snapshots])
        self._weights = weights if isinstance(weights, WeightStore) else dict(weights)  # type: ignore[assignment]
        self.touch()

    def update_weights(self, model: Any) -> None:
        """Copy the model's current values into `weights` (e.g. after training), by param source.

        `model` is the live model this graph was compiled from (a torch.nn.Module or keras.Model: any
        model a registered weight reader accepts, NOTE: [Weight readers]), on any device and in any
        dtype (values are read back to the host), or a mapping of param source (`Param.source`) to an
        array-like (a numpy array, a tensor, a variable), such as a torch `state_dict()`.

        A constant the frontend computed while lowering (position ids folded from `torch.arange`, a
        causal mask, a selection matrix) has no tensor in the model: it keeps its compile-time value,
        since it depends on sizes only and training cannot change it.

        Raises:
            IRValidationError: no weight reader accepts `model`, or a param's source is missing from
                the model (and is not such a constant) or has another shape.
        """
        from asgnas_ir.errors import IRValidationError
        from asgnas_ir.ir.ops import Op

        tensors = read_live_weights(model)
        read_by_others = {p for node in self.nodes if node.op != Op.CONSTANT for p in node.params.values()}
        computed = {p for node in self.nodes if node.op == Op.CONSTANT for p in node.params.values()} - read_by_others
        weights = {}
        for name, param in self.params.items():
            tensor = tensors.get(param.source)
            if tensor is None and name in computed and not param.trainable and name in self.weights:
                weights[name] = self.weights[name]
                continue
            if tensor is None:
                raise IRValidationError(f"param '@{name}': the model has no parameter or buffer '{param.source}'")
            if shape_of(tensor) != tuple(param.shape):
                raise IRValidationError(
                    f"param '@{name}': the model's '{param.source}' has shape {list(shape_of(tensor))}, the graph "
                    f"declares {list(param.shape)}; recompile the model instead"
                )
            weights[name] = as_array(tensor)
        self.set_weights(weights)

    # ---- versioned indices -------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self._version

    def touch(self) -> None:
        """Record an in-place change: drops derived indices and cached pass results."""
        self._version += 1
        self._cache.clear()

    def _ensure_index(self) -> None:
        if self._index_version == self._version:
            return
        self._producers = {}
        self._users = {name: [] for name in self.values}
        self._by_id = {}
        for node in self.nodes:
            self._by_id[node.id] = node
            for i, out in enumerate(node.outputs):
                self._producers[out] = (node, i)
            for inp in node.inputs:
                self._users.setdefault(inp, []).append(node)
        self._index_version = self._version

    def producer(self, value: str) -> NodeBase | None:
        """The node that defines `value`, or None for graph inputs."""
        self._ensure_index()
        entry = self._producers.get(value)
        return entry[0] if entry else None

    def users(self, value: str) -> list[NodeBase]:
        """Nodes that read `value`, in graph order (a node reading it twice appears twice)."""
        self._ensure_index()
        return self._users.get(value, [])

    def node(self, node_id: str) -> NodeBase:
        self._ensure_index()
        return self._by_id[node_id]

    def __iter__(self) -> Iterator[NodeBase]:  # type: ignore[override]
        return iter(self.nodes)

    # ---- convenience ---------------------------------------------------------------------------
    def param_count(self, *, trainable_only: bool = True) -> int:
        return sum(p.numel for p in self.params.values() if p.trainable or not trainable_only)

    def fingerprint(self) -> str:
        """Short hash of the structure (not the weights, not the tool versions in `meta`)."""
        return hashlib.sha256(self.model_dump_json(exclude={"meta"}).encode()).hexdigest()[:12]

    def copy_with(self, **changes: Any) -> Graph:
        """A new graph with fields replaced, validated, carrying over the weights unless given."""
        weights = changes.pop("weights", None)
        data = self.model_dump()
        data.update({k: v for k, v in changes.items()})
        new = Graph.model_validate(data)
        new.set_weights(self._weights if weights is None else weights)
        return new

    def text(self) -> str:
        """The one-line-per-node text form (see `asgnas_ir.ir.text`)."""
        from asgnas_ir.ir.text import graph_to_text

        return graph_to_text(self)

    def __str__(self) -> str:
        return self.text()

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write `path` (JSON) and, when the graph has weights, `<stem>.safetensors` beside it."""
        from asgnas_ir.ir.serialize import save_graph

        return save_graph(self, Path(path))


def contiguous(array: np.ndarray) -> np.ndarray:
    """A C-contiguous array of the same shape (np.ascontiguousarray would turn 0-d into 1-d)."""
    return array if array.flags.c_contiguous else array.copy(order="C")
