"""codegen-onnx: write a graph as one self-contained `model.onnx` (ONNX opset 19, IR version 9).

The model is built with onnx-ir, one emitter per op in `ONNX_EMITTERS` (the counterpart of
codegen-torch's `EMITTERS`). Naming, so that the file reads like the source model in Netron:
- every IR value keeps its name, with its static shape and dtype (graph inputs and outputs too);
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

onnx-ir is imported when a model is built, never at `import asgnas_ir`, so the table and the pass
register without onnx installed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asgnas_ir import __version__
from asgnas_ir.errors import CodegenError
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.graph import Graph, Param
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.pass_manager import Pass, register_pass

if TYPE_CHECKING:
    import onnx_ir as ir

OPSET = 19
IR_VERSION = 9
MODEL_FILE = "model.onnx"

Emitter = Callable[["OnnxPrinter", NodeBase], None]
ONNX_EMITTERS: dict[Op, Emitter] = {}


def emits(*ops: Op) -> Callable[[Emitter], Emitter]:
    def add(fn: Emitter) -> Emitter:
        for op in ops:
            if op in ONNX_EMITTERS:
                raise RuntimeError(f"onnx emitter for '{op.value}' registered twice")
            ONNX_EMITTERS[op] = fn
        return fn

    return add


def _onnx_ir() -> Any:
    try:
        import onnx_ir
    except ImportError:  # pragma: no cover - depends on the environment
        raise CodegenError("codegen-onnx needs onnx and onnx-ir: pip install 'asgnas-ir[onnx]'") from None
    return onnx_ir


class OnnxPrinter:
    """Builds the ONNX graph node by node; emitters call `op` for helper nodes and `out` last."""

    def __init__(self, graph: Graph) -> None:
        self.ir = _onnx_ir()
        self.graph = graph
        self.tape = self.ir.tape.Tape()
        self.values: dict[str, ir.Value] = {}  # IR value name -> ONNX value
        self._initializers: dict[tuple[str, ...], ir.Value] = {}
        # IR value names and param names are reserved up front; a constant's value is its initializer
        constants = {out for node in graph.nodes if node.op is Op.CONSTANT for out in node.outputs}
        self._value_names = set(graph.values) - constants
        self._taken: set[str] = self._value_names | set(graph.params)
        self._node_names: set[str] = set()

    # ---- names ---------------------------------------------------------------------------------
    def _unique(self, base: str, taken: set[str]) -> str:
        name, n = base, 1
        while name in taken:
            name = f"{base}_{n}"
            n += 1
        taken.add(name)
        return name

    def _doc(self, node: NodeBase) -> str:
        return f"{node.op.value} from '{node.source}'" if node.source else node.op.value

    # ---- helpers the emitters use ----------------------------------------------------------------
    def x(self, node: NodeBase, index: int = 0) -> ir.Value:
        return self.values[node.inputs[index]]

    def shape(self, value: str) -> tuple[int, ...]:
        return self.graph.values[value].shape

    def dtype(self, value: str) -> str:
        return self.graph.values[value].dtype

    def has(self, node: NodeBase, role: str) -> bool:
        return role in node.params

    def param_info(self, node: NodeBase, role: str) -> Param:
        return self.graph.params[node.params[role]]

    def param(self, node: NodeBase, role: str) -> ir.Value:
        """The initializer of `node`'s param `role`, named by the IR param name, created once."""
        name = node.params[role]
        key = ("param", name)
        if key not in self._initializers:
            array = self.graph.weights.get(name)
            if array is None:
                raise CodegenError(
                    f"param '@{name}' has no weights; compile the model with weights or load the IR with its .safetensors"
                )
            tensor = self.ir.tensor(np.asarray(array, dtype=np.dtype(self.graph.params[name].dtype)))
            onnx_name = name if name not in self._value_names else self._unique(f"{name}_param", self._taken)
            self._initializers[key] = self.tape.initializer(tensor, name=onnx_name)
        return self._initializers[key]

    def const(self, node: NodeBase, hint: str, array: Any, dtype: Any = None) -> ir.Value:
        """A helper initializer named `<node id>/<hint>` (shapes, axes, scalars, masks)."""
        array = np.asarray(array, dtype=dtype)
        tensor = self.ir.tensor(array)
        value = self.tape.initializer(tensor, name=self._unique(f"{node.id}/{hint}", self._taken))
        self._initializers[("const", value.name)] = value
        return value

    def ints(self, node: NodeBase, hint: str, values: Sequence[int]) -> ir.Value:
        return self.const(node, hint, list(values), np.int64)

    def scalar(self, node: NodeBase, hint: str, value: float, like: str | None = None) -> ir.Value:
        """A 0-d constant with the dtype of IR value `like` (default: the node's first input)."""
        dtype = self.dtype(like if like is not None else node.inputs[0])
        return self.const(node, hint, value, np.dtype(dtype))

    def op(self, node: NodeBase, op_type: str, inputs: Sequence[ir.Value | None], hint: str | None = None, **attrs: Any) -> ir.Value:
        """A helper node of `node`'s decomposition; its output is named `<node id>/<hint>`."""
        base = f"{node.id}/{hint or op_type.lower()}"
        name = self._unique(base, self._node_names)
        value = self.tape.op(op_type, list(inputs), _attributes(attrs), name=name, doc_string=self._doc(node))
        value.name = self._unique(base, self._taken)
        return value

    def out(self, node: NodeBase, op_type: str, inputs: Sequence[ir.Value | None], **attrs: Any) -> None:
        """The node that produces `node`'s outputs: named by the node id, outputs by the IR values."""
        name = self._unique(node.id, self._node_names)
        outputs = self.tape.op_multi_out(
            op_type, list(inputs), _attributes(attrs), num_outputs=len(node.outputs), name=name, doc_string=self._doc(node)
        )
        for value, ir_name in zip(outputs, node.outputs, strict=True):
            value.name = ir_name
            self._describe(value, ir_name)
            self.values[ir_name] = value

    def alias(self, node: NodeBase, value: ir.Value) -> None:
        """`node`'s output is `value` itself (no node); a graph output gets an Identity later."""
        self.values[node.outputs[0]] = value

    def _describe(self, value: ir.Value, ir_name: str) -> None:
        info = self.graph.values[ir_name]
        value.type = self.ir.TensorType(_data_type(self.ir, info.dtype))
        value.shape = self.ir.Shape(list(info.shape))

    # ---- building ------------------------------------------------------------------------------
    def build(self) -> ir.Model:
        ir_ = self.ir
        graph = self.graph
        inputs = []
        for name in graph.inputs:
            value = ir_.Value(name=name)
            self._describe(value, name)
            self.values[name] = value
            inputs.append(value)
        for node in graph.nodes:
            emitter = ONNX_EMITTERS.get(node.op)
            if emitter is None:
                raise CodegenError(f"node '{node.id}' (op {node.op.value}, from '{node.source}') has no onnx emitter")
            emitter(self, node)
        outputs: list[ir.Value] = []
        for name in graph.outputs:
            value = self.values[name]
            if value.name != name or value.const_value is not None or value in inputs or value in outputs:
                # an alias (constant, graph input) or an output listed twice: give it its own node
                used = {v.name for v in [*inputs, *outputs, *self.tape.initializers]}
                free = value.name != name and name not in used
                identity = self.tape.op("Identity", [value], name=self._unique(f"{name}/output", self._node_names))
                identity.name = name if free else self._unique(f"{name}_out", self._taken)
                self._describe(identity, name)
                value = identity
            outputs.append(value)
        onnx_graph = ir_.Graph(
            inputs,
            outputs,
            nodes=self.tape.nodes,
            initializers=self.tape.initializers,
            opset_imports={"": OPSET},
            name=graph.name,
            doc_string=f"{graph.meta.framework or '?'} model {graph.meta.model_name or graph.name}, IR fingerprint {graph.fingerprint()}",
        )
        return ir_.Model(onnx_graph, ir_version=IR_VERSION, producer_name="asgnas-ir", producer_version=__version__)


_DATA_TYPES = {
    "float32": "FLOAT", "float64": "DOUBLE", "float16": "FLOAT16", "bfloat16": "BFLOAT16", "int64": "INT64",
    "int32": "INT32", "int16": "INT16", "int8": "INT8", "uint8": "UINT8", "bool": "BOOL",
}


def _data_type(ir_: Any, dtype: str) -> Any:
    if dtype not in _DATA_TYPES:
        raise CodegenError(f"dtype '{dtype}' has no ONNX equivalent in codegen-onnx")
    return getattr(ir_.DataType, _DATA_TYPES[dtype])


def _attributes(attrs: dict[str, Any]) -> dict[str, Any]:
    """Drop attributes left at None; tuples become lists of ints/floats."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if value is None:
            continue
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


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


# ---- emitters ---------------------------------------------------------------------------------


def _refuse_channels_last(node: NodeBase) -> None:
    if getattr(node.attrs, "channels_last", False):
        raise CodegenError(
            f"node '{node.id}' (op {node.op.value}, from '{node.source}') is channels-last; codegen-onnx emits "
            "channels-first convolutions and pools only in this version"
        )


def _weight_in(p: OnnxPrinter, node: NodeBase, prefix: str) -> ir.Value:
    """The conv weight in ONNX's layout: `prefix` ("OI" or "IO") then the spatial axes."""
    info = p.param_info(node, "weight")
    weight = p.param(node, "weight")
    axes = info.axes or ""
    if not axes or axes.startswith(prefix):
        return weight
    spatial = [i for i, letter in enumerate(axes) if letter not in "OI"]
    perm = [axes.index(prefix[0]), axes.index(prefix[1]), *spatial]
    return p.op(node, "Transpose", [weight], "weight", perm=perm)


_PAD_MODES = {"constant": "constant", "zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@emits(Op.CONV)
def _conv(p: OnnxPrinter, node: NodeBase) -> None:
    _refuse_channels_last(node)
    attrs: A.ConvAttrs = node.attrs  # type: ignore[assignment]
    weight = _weight_in(p, node, "OI")
    info = p.param_info(node, "weight")
    kernel = [d for d, letter in zip(info.shape, info.axes or "OI" + "K" * (len(info.shape) - 2), strict=True) if letter not in "OI"]
    x = p.x(node)
    pads: list[int] = [b for b, _ in attrs.padding] + [a for _, a in attrs.padding]
    if attrs.padding_mode != "zeros" and any(pads):
        full = [0, 0, *[b for b, _ in attrs.padding], 0, 0, *[a for _, a in attrs.padding]]
        x = p.op(node, "Pad", [x, p.ints(node, "pads", full)], "padded", mode=_PAD_MODES[attrs.padding_mode])
        pads = [0] * len(pads)
    bias = p.param(node, "bias") if p.has(node, "bias") else None
    p.out(
        node, "Conv", [x, weight] + ([bias] if bias is not None else []),
        kernel_shape=kernel, strides=attrs.stride, pads=pads, dilations=attrs.dilation, group=attrs.groups,
    )


@emits(Op.CONV_TRANSPOSE)
def _conv_transpose(p: OnnxPrinter, node: NodeBase) -> None:
    _refuse_channels_last(node)
    attrs: A.ConvTransposeAttrs = node.attrs  # type: ignore[assignment]
    weight = _weight_in(p, node, "IO")
    info = p.param_info(node, "weight")
    kernel = [d for d, letter in zip(info.shape, info.axes or "IO" + "K" * (len(info.shape) - 2), strict=True) if letter not in "OI"]
    bias = p.param(node, "bias") if p.has(node, "bias") else None
    p.out(
        node, "ConvTranspose", [p.x(node), weight] + ([bias] if bias is not None else []),
        kernel_shape=kernel, strides=attrs.stride, pads=[*attrs.padding, *attrs.padding],
        output_padding=attrs.output_padding if any(attrs.output_padding) else None,
        dilations=attrs.dilation, group=attrs.groups,
    )


@emits(Op.LINEAR)
def _linear(p: OnnxPrinter, node: NodeBase) -> None:
    """Gemm for [N, in] inputs; MatMul (+ Add) for any other rank. The weight is [out, in] ("OI")."""
    info = p.param_info(node, "weight")
    weight = p.param(node, "weight")
    transposed = (info.axes or "OI") == "OI"
    bias = p.param(node, "bias") if p.has(node, "bias") else None
    if len(p.shape(node.inputs[0])) == 2:
        p.out(node, "Gemm", [p.x(node), weight] + ([bias] if bias is not None else []), transB=1 if transposed else None)
        return
    if transposed:
        weight = p.op(node, "Transpose", [weight], "weight_t", perm=[1, 0])
    if bias is None:
        p.out(node, "MatMul", [p.x(node), weight])
        return
    product = p.op(node, "MatMul", [p.x(node), weight], "matmul")
    p.out(node, "Add", [product, bias])


@emits(Op.EMBEDDING)
def _embedding(p: OnnxPrinter, node: NodeBase) -> None:
    info = p.param_info(node, "weight")
    weight = p.param(node, "weight")
    if info.axes and info.axes[0] != "V" and "V" in info.axes:
        weight = p.op(node, "Transpose", [weight], "weight_t", perm=[1, 0])
    p.out(node, "Gather", [weight, p.x(node)], axis=0)


def _channel_axis(p: OnnxPrinter, node: NodeBase) -> int:
    value = p.graph.values[node.inputs[0]]
    return 1 if value.channel_axis is None else value.channel_axis


def _per_channel(p: OnnxPrinter, node: NodeBase, role: str | None, fill: float, axis: int) -> ir.Value:
    """A [C] vector (the param `role`, or constant `fill`) shaped to broadcast along `axis`."""
    rank = len(p.shape(node.inputs[0]))
    channels = p.shape(node.inputs[0])[axis]
    trailing = rank - 1 - axis
    if role is not None and p.has(node, role):
        vector = p.param(node, role)
        if trailing == 0:
            return vector
        return p.op(node, "Unsqueeze", [vector, p.ints(node, f"{role}_axes", range(1, trailing + 1))], f"{role}_c")
    dtype = np.dtype(p.dtype(node.inputs[0]))
    return p.const(node, "ones" if fill == 1.0 else "zeros", np.full((channels,) + (1,) * trailing, fill, dtype=dtype))


def _vector(p: OnnxPrinter, node: NodeBase, role: str | None, fill: float, size: int) -> ir.Value:
    """The [size] param `role` or, when the node has none, a constant `fill` vector."""
    if role is not None and p.has(node, role):
        return p.param(node, role)
    dtype = np.dtype(p.dtype(node.inputs[0]))
    return p.const(node, "ones" if fill == 1.0 else "zeros", np.full((size,), fill, dtype=dtype))


def _batch_stats_norm(p: OnnxPrinter, node: NodeBase, eps: float, axis: int) -> None:
    """(x - mean) / sqrt(var + eps) * weight + bias with the statistics of this batch (per channel)."""
    rank = len(p.shape(node.inputs[0]))
    reduce_axes = p.ints(node, "axes", [a for a in range(rank) if a != axis])
    x = p.x(node)
    mean = p.op(node, "ReduceMean", [x, reduce_axes], "mean", keepdims=1)
    centred = p.op(node, "Sub", [x, mean], "centred")
    var = p.op(node, "ReduceMean", [p.op(node, "Mul", [centred, centred], "squared"), reduce_axes], "var", keepdims=1)
    std = p.op(node, "Sqrt", [p.op(node, "Add", [var, p.scalar(node, "eps", eps)], "var_eps")], "std")
    normed = p.op(node, "Div", [centred, std], "normed")
    if not p.has(node, "weight"):
        p.out(node, "Identity", [normed])
        return
    scaled = p.op(node, "Mul", [normed, _per_channel(p, node, "weight", 1.0, axis)], "scaled")
    p.out(node, "Add", [scaled, _per_channel(p, node, "bias", 0.0, axis)])


def _inference_batch_norm(p: OnnxPrinter, node: NodeBase, eps: float) -> None:
    """BatchNormalization with the running statistics (channel axis 1), or its decomposition."""
    axis = _channel_axis(p, node)
    channels = p.shape(node.inputs[0])[axis]
    if axis == 1:
        p.out(
            node, "BatchNormalization",
            [
                p.x(node), _vector(p, node, "weight", 1.0, channels), _vector(p, node, "bias", 0.0, channels),
                p.param(node, "running_mean"), p.param(node, "running_var"),
            ],
            epsilon=float(eps),
        )
        return
    x = p.x(node)
    centred = p.op(node, "Sub", [x, _per_channel(p, node, "running_mean", 0.0, axis)], "centred")
    var_eps = p.op(node, "Add", [_per_channel(p, node, "running_var", 1.0, axis), p.scalar(node, "eps", eps)], "var_eps")
    normed = p.op(node, "Div", [centred, p.op(node, "Sqrt", [var_eps], "std")], "normed")
    scaled = p.op(node, "Mul", [normed, _per_channel(p, node, "weight", 1.0, axis)], "scaled")
    p.out(node, "Add", [scaled, _per_channel(p, node, "bias", 0.0, axis)])


@emits(Op.BATCH_NORM)
def _batch_norm(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.BatchNormAttrs = node.attrs  # type: ignore[assignment]
    if p.has(node, "running_mean"):
        _inference_batch_norm(p, node, attrs.eps)
    else:  # track_running_stats=False: torch normalises with the batch's own statistics
        _batch_stats_norm(p, node, attrs.eps, _channel_axis(p, node))


@emits(Op.INSTANCE_NORM)
def _instance_norm(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.InstanceNormAttrs = node.attrs  # type: ignore[assignment]
    if p.has(node, "running_mean"):  # track_running_stats=True: eval mode uses the running statistics
        _inference_batch_norm(p, node, attrs.eps)
        return
    if _channel_axis(p, node) != 1:
        raise CodegenError(f"node '{node.id}' (instance_norm, from '{node.source}') is channels-last; not supported by codegen-onnx yet")
    channels = p.shape(node.inputs[0])[1]
    p.out(
        node, "InstanceNormalization",
        [p.x(node), _vector(p, node, "weight", 1.0, channels), _vector(p, node, "bias", 0.0, channels)],
        epsilon=float(attrs.eps),
    )


@emits(Op.GROUP_NORM)
def _group_norm(p: OnnxPrinter, node: NodeBase) -> None:
    """InstanceNormalization over x reshaped to [N, G, -1], reshaped back, then the per-channel affine."""
    attrs: A.GroupNormAttrs = node.attrs  # type: ignore[assignment]
    if _channel_axis(p, node) != 1:
        raise CodegenError(f"node '{node.id}' (group_norm, from '{node.source}') is channels-last; not supported by codegen-onnx yet")
    shape = p.shape(node.inputs[0])
    g = attrs.num_groups
    dtype = np.dtype(p.dtype(node.inputs[0]))
    grouped = p.op(node, "Reshape", [p.x(node), p.ints(node, "grouped_shape", [shape[0], g, -1])], "grouped")
    normed = p.op(
        node, "InstanceNormalization",
        [grouped, p.const(node, "group_ones", np.ones(g, dtype)), p.const(node, "group_zeros", np.zeros(g, dtype))],
        "normed", epsilon=float(attrs.eps),
    )
    if not p.has(node, "weight"):
        p.out(node, "Reshape", [normed, p.ints(node, "shape", shape)])
        return
    restored = p.op(node, "Reshape", [normed, p.ints(node, "shape", shape)], "restored")
    scaled = p.op(node, "Mul", [restored, _per_channel(p, node, "weight", 1.0, 1)], "scaled")
    p.out(node, "Add", [scaled, _per_channel(p, node, "bias", 0.0, 1)])


@emits(Op.LAYER_NORM)
def _layer_norm(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.LayerNormAttrs = node.attrs  # type: ignore[assignment]
    shape = p.shape(node.inputs[0])
    rank = len(shape)
    if tuple(attrs.axes) != tuple(range(rank - len(attrs.axes), rank)):
        raise CodegenError(f"node '{node.id}' (layer_norm, from '{node.source}') normalises axes {attrs.axes}, not the trailing ones")
    normalized = shape[attrs.axes[0]:]
    if p.has(node, "weight"):
        scale = p.param(node, "weight")
        if tuple(p.param_info(node, "weight").shape) != tuple(normalized):
            scale = p.op(node, "Reshape", [scale, p.ints(node, "scale_shape", normalized)], "scale")
    else:
        scale = p.const(node, "ones", np.ones(normalized, np.dtype(p.dtype(node.inputs[0]))))
    inputs = [p.x(node), scale]
    if p.has(node, "bias"):
        bias = p.param(node, "bias")
        if tuple(p.param_info(node, "bias").shape) != tuple(normalized):
            bias = p.op(node, "Reshape", [bias, p.ints(node, "bias_shape", normalized)], "bias")
        inputs.append(bias)
    p.out(node, "LayerNormalization", inputs, axis=attrs.axes[0], epsilon=float(attrs.eps))


# ---- elementwise ------------------------------------------------------------------------------


def _simple(op_type: str, **fixed: Any) -> Emitter:
    def emit(p: OnnxPrinter, node: NodeBase) -> None:
        p.out(node, op_type, [p.x(node)], **fixed)

    return emit


ONNX_EMITTERS.update(
    {
        Op.RELU: _simple("Relu"),
        Op.SIGMOID: _simple("Sigmoid"),
        Op.TANH: _simple("Tanh"),
        Op.EXP: _simple("Exp"),
        Op.SQRT: _simple("Sqrt"),
        Op.NEG: _simple("Neg"),
        Op.HARDSWISH: _simple("HardSwish"),
        Op.HARDSIGMOID: _simple("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),  # torch: relu6(x + 3) / 6
        Op.IDENTITY: _simple("Identity"),
        Op.DROPOUT: _simple("Identity"),  # inference: dropout is the identity
    }
)


@emits(Op.POW)
def _pow(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "Pow", [p.x(node), p.scalar(node, "exponent", float(node.attrs.exponent))])  # type: ignore[attr-defined]


@emits(Op.LEAKY_RELU)
def _leaky_relu(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "LeakyRelu", [p.x(node)], alpha=float(node.attrs.negative_slope))  # type: ignore[attr-defined]


@emits(Op.ELU)
def _elu(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "Elu", [p.x(node)], alpha=float(node.attrs.alpha))  # type: ignore[attr-defined]


@emits(Op.CLAMP)
def _clamp(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.ClampAttrs = node.attrs  # type: ignore[assignment]
    low = None if attrs.min is None else p.scalar(node, "min", attrs.min)
    high = None if attrs.max is None else p.scalar(node, "max", attrs.max)
    p.out(node, "Clip", [p.x(node), low, high])


@emits(Op.SILU)
def _silu(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "Mul", [p.x(node), p.op(node, "Sigmoid", [p.x(node)], "sigmoid")])


@emits(Op.MISH)
def _mish(p: OnnxPrinter, node: NodeBase) -> None:
    """x * tanh(softplus(x))."""
    softplus = p.op(node, "Softplus", [p.x(node)], "softplus")
    p.out(node, "Mul", [p.x(node), p.op(node, "Tanh", [softplus], "tanh")])


@emits(Op.GELU)
def _gelu(p: OnnxPrinter, node: NodeBase) -> None:
    """Exact: x * 0.5 * (1 + erf(x / sqrt 2)); tanh: x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))."""
    x = p.x(node)
    if node.attrs.approximate == "tanh":  # type: ignore[attr-defined]
        cube = p.op(node, "Mul", [p.op(node, "Mul", [x, x], "square"), x], "cube")
        inner = p.op(node, "Add", [x, p.op(node, "Mul", [cube, p.scalar(node, "c", 0.044715)], "cube_c")], "inner")
        curve = p.op(node, "Tanh", [p.op(node, "Mul", [inner, p.scalar(node, "k", math.sqrt(2.0 / math.pi))], "scaled")], "tanh")
    else:
        curve = p.op(node, "Erf", [p.op(node, "Mul", [x, p.scalar(node, "rsqrt2", 1.0 / math.sqrt(2.0))], "scaled")], "erf")
    one_plus = p.op(node, "Add", [curve, p.scalar(node, "one", 1.0)], "one_plus")
    half_x = p.op(node, "Mul", [x, p.scalar(node, "half", 0.5)], "half_x")
    p.out(node, "Mul", [half_x, one_plus])


@emits(Op.SOFTPLUS)
def _softplus(p: OnnxPrinter, node: NodeBase) -> None:
    """torch: log(1 + exp(beta x)) / beta, and x itself where beta x > threshold."""
    attrs: A.SoftplusAttrs = node.attrs  # type: ignore[assignment]
    x = p.x(node)
    if attrs.beta == 1.0 and attrs.threshold >= 20.0:  # the linear region differs by < exp(-20)
        p.out(node, "Softplus", [x])
        return
    beta = p.scalar(node, "beta", attrs.beta)
    bx = p.op(node, "Mul", [x, beta], "beta_x")
    soft = p.op(node, "Div", [p.op(node, "Softplus", [bx], "softplus"), beta], "soft")
    linear = p.op(node, "Greater", [bx, p.scalar(node, "threshold", attrs.threshold)], "linear")
    p.out(node, "Where", [linear, x, soft])


_BINARY = {Op.ADD: "Add", Op.SUB: "Sub", Op.MUL: "Mul", Op.DIV: "Div"}


@emits(*_BINARY)
def _binary(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.BinaryAttrs = node.attrs  # type: ignore[assignment]
    op_type = _BINARY[node.op]
    if attrs.scalar is None:
        p.out(node, op_type, [p.x(node, 0), p.x(node, 1)])
        return
    scalar = p.scalar(node, "scalar", attrs.scalar)
    p.out(node, op_type, [scalar, p.x(node)] if attrs.reverse else [p.x(node), scalar])


@emits(Op.MATMUL)
def _matmul(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "MatMul", [p.x(node, 0), p.x(node, 1)])


@emits(Op.ATTENTION)
def _attention(p: OnnxPrinter, node: NodeBase) -> None:
    """softmax(q @ k^T * scale + mask [+ causal]) @ v, decomposed; the causal mask is an initializer."""
    attrs: A.AttentionAttrs = node.attrs  # type: ignore[assignment]
    q, k, v = p.x(node, 0), p.x(node, 1), p.x(node, 2)
    rank = len(p.shape(node.inputs[1]))
    perm = [*range(rank - 2), rank - 1, rank - 2]
    k_t = p.op(node, "Transpose", [k], "k_t", perm=perm)
    scores = p.op(node, "MatMul", [q, k_t], "scores")
    scores = p.op(node, "Mul", [scores, p.scalar(node, "scale", attrs.scale)], "scaled")
    if len(node.inputs) > 3:
        mask_name = node.inputs[3]
        mask = p.x(node, 3)
        if p.dtype(mask_name) == "bool":  # True = attend, as torch's scaled_dot_product_attention
            zero, neg_inf = p.scalar(node, "zero", 0.0), p.scalar(node, "neg_inf", -np.inf)
            mask = p.op(node, "Where", [mask, zero, neg_inf], "mask")
        scores = p.op(node, "Add", [scores, mask], "masked")
    if attrs.causal:
        tq, tk = p.shape(node.inputs[0])[-2], p.shape(node.inputs[1])[-2]
        causal = np.triu(np.full((tq, tk), -np.inf, dtype=np.dtype(p.dtype(node.inputs[0]))), k=1)
        scores = p.op(node, "Add", [scores, p.const(node, "causal_mask", causal)], "causal")
    weights = p.op(node, "Softmax", [scores], "weights", axis=-1)
    p.out(node, "MatMul", [weights, v])


# ---- data movement ----------------------------------------------------------------------------


@emits(Op.CONCAT)
def _concat(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "Concat", [p.values[i] for i in node.inputs], axis=node.attrs.axis)  # type: ignore[attr-defined]


@emits(Op.SPLIT)
def _split(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.SplitAttrs = node.attrs  # type: ignore[assignment]
    p.out(node, "Split", [p.x(node), p.ints(node, "sizes", attrs.sizes)], axis=attrs.axis)


@emits(Op.SLICE)
def _slice(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.SliceAttrs = node.attrs  # type: ignore[assignment]
    p.out(
        node, "Slice",
        [
            p.x(node), p.ints(node, "starts", [attrs.start]), p.ints(node, "ends", [attrs.stop]),
            p.ints(node, "axes", [attrs.axis]), p.ints(node, "steps", [attrs.step]),
        ],
    )


@emits(Op.RESHAPE)
def _reshape(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "Reshape", [p.x(node), p.ints(node, "shape", p.shape(node.outputs[0]))])


@emits(Op.FLATTEN)
def _flatten(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.FlattenAttrs = node.attrs  # type: ignore[assignment]
    if attrs.start_axis == 1 and attrs.end_axis == len(p.shape(node.inputs[0])) - 1:  # ONNX Flatten is always 2-d
        p.out(node, "Flatten", [p.x(node)], axis=attrs.start_axis)
    else:
        p.out(node, "Reshape", [p.x(node), p.ints(node, "shape", p.shape(node.outputs[0]))])


@emits(Op.PERMUTE)
def _permute(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "Transpose", [p.x(node)], perm=node.attrs.perm)  # type: ignore[attr-defined]


@emits(Op.EXPAND)
def _expand(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "Expand", [p.x(node), p.ints(node, "shape", p.shape(node.outputs[0]))])


@emits(Op.PAD)
def _pad(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.PadAttrs = node.attrs  # type: ignore[assignment]
    rank = len(p.shape(node.inputs[0]))
    pairs = [(0, 0)] * (rank - len(attrs.pads)) + list(attrs.pads)
    pads = p.ints(node, "pads", [b for b, _ in pairs] + [a for _, a in pairs])
    if attrs.mode == "constant":
        p.out(node, "Pad", [p.x(node), pads, p.scalar(node, "value", attrs.value)], mode="constant")
    else:
        p.out(node, "Pad", [p.x(node), pads], mode=_PAD_MODES[attrs.mode])


# ---- pooling and reductions -------------------------------------------------------------------


@emits(Op.MAX_POOL, Op.AVG_POOL)
def _pool(p: OnnxPrinter, node: NodeBase) -> None:
    """MaxPool / AveragePool. ceil_mode is written as floor mode with extra end padding: torch drops a
    last window that would start in the padding, ONNX's shape inference keeps it, so `ceil_mode=1`
    would make the file disagree with its own declared shapes."""
    _refuse_channels_last(node)
    attrs: A.PoolAttrs = node.attrs  # type: ignore[assignment]
    n = len(attrs.kernel_size)
    padding = list(attrs.padding or (0,) * n)
    stride = attrs.stride or attrs.kernel_size
    dilation = attrs.dilation or (1,) * n
    x = p.x(node)
    end = list(padding)
    count_include_pad = node.op is Op.AVG_POOL and attrs.count_include_pad
    if attrs.ceil_mode:
        in_sizes, out_sizes = p.shape(node.inputs[0])[2:], p.shape(node.outputs[0])[2:]
        extra = [
            max(0, (o - 1) * s + d * (k - 1) + 1 - (i + 2 * q))
            for i, o, k, s, d, q in zip(in_sizes, out_sizes, attrs.kernel_size, stride, dilation, padding, strict=True)
        ]
        if count_include_pad and any(padding):
            # torch counts the padding but not the ceil overhang: pad with zeros, then count nothing padded
            pads = p.ints(node, "pads", [0, 0, *padding, 0, 0, *padding])
            x = p.op(node, "Pad", [x, pads, p.scalar(node, "zero", 0.0)], "padded", mode="constant")
            padding = [0] * n
        end = [q + e for q, e in zip(padding, extra, strict=True)]
        count_include_pad = False
    common: dict[str, Any] = {
        "kernel_shape": attrs.kernel_size,
        "strides": stride,
        "pads": [*padding, *end],
        "dilations": dilation if set(dilation) != {1} else None,
    }
    if node.op is Op.MAX_POOL:
        p.out(node, "MaxPool", [x], **common)
    else:
        p.out(node, "AveragePool", [x], count_include_pad=1 if count_include_pad else None, **common)


def adaptive_window(in_size: int, out_size: int) -> tuple[int, int] | None:
    """(kernel, stride) of the regular pool equal to torch's adaptive pool from in_size to out_size,
    or None when torch's windows (start floor(i*in/out), end ceil((i+1)*in/out)) are not regular."""
    starts = [(i * in_size) // out_size for i in range(out_size)]
    ends = [-((-(i + 1) * in_size) // out_size) for i in range(out_size)]
    sizes = {e - s for s, e in zip(starts, ends, strict=True)}
    if len(sizes) != 1:
        return None
    kernel = sizes.pop()
    if out_size == 1:
        return kernel, 1
    steps = {b - a for a, b in zip(starts, starts[1:], strict=False)}
    if len(steps) != 1:
        return None
    stride = steps.pop()
    return (kernel, stride) if stride >= 1 else None


@emits(Op.ADAPTIVE_AVG_POOL, Op.ADAPTIVE_MAX_POOL)
def _adaptive_pool(p: OnnxPrinter, node: NodeBase) -> None:
    """Global pool for output 1, else the regular pool with the same windows, else refused."""
    _refuse_channels_last(node)
    attrs: A.AdaptivePoolAttrs = node.attrs  # type: ignore[assignment]
    kind = "Average" if node.op is Op.ADAPTIVE_AVG_POOL else "Max"
    spatial = p.shape(node.inputs[0])[2:]
    if set(attrs.output_size) == {1}:
        p.out(node, f"Global{kind}Pool", [p.x(node)])
        return
    windows = [adaptive_window(i, o) for i, o in zip(spatial, attrs.output_size, strict=True)]
    if any(w is None for w in windows):
        raise CodegenError(
            f"node '{node.id}' ({node.op.value}, from '{node.source}') pools {tuple(spatial)} to {attrs.output_size}: "
            "its windows have different sizes, which no single ONNX pool can express"
        )
    kernel = [w[0] for w in windows]  # type: ignore[index]
    stride = [w[1] for w in windows]  # type: ignore[index]
    p.out(node, f"{kind}Pool", [p.x(node)], kernel_shape=kernel, strides=stride)


@emits(Op.MEAN, Op.SUM)
def _reduce(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.ReduceAttrs = node.attrs  # type: ignore[assignment]
    op_type = "ReduceMean" if node.op is Op.MEAN else "ReduceSum"
    p.out(node, op_type, [p.x(node), p.ints(node, "axes", attrs.axes)], keepdims=1 if attrs.keepdim else 0)


@emits(Op.SOFTMAX)
def _softmax(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "Softmax", [p.x(node)], axis=node.attrs.axis)  # type: ignore[attr-defined]


@emits(Op.CONSTANT)
def _constant(p: OnnxPrinter, node: NodeBase) -> None:
    p.alias(node, p.param(node, "value"))


@emits(Op.OPAQUE)
def _opaque(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.OpaqueAttrs = node.attrs  # type: ignore[assignment]
    raise CodegenError(
        f"node '{node.id}' is an opaque {attrs.kind} call ({attrs.target}, from '{node.source}'); codegen-onnx cannot "
        "express an op the IR does not know. Add a converter for it (docs/adding_an_op.md)."
    )


@register_pass
class CodegenOnnx(Pass):
    name = "codegen-onnx"
    description = f"Write the graph as one ONNX model (model.onnx, opset {OPSET}) with the weights as named initializers."
    kind = "codegen"
    requires = ("verify",)

    def run(self, graph: Graph, out_dir: str | Path = "generated") -> list[Path]:
        return write_onnx(graph, out_dir)
