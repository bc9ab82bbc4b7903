"""codegen-torch: write a graph as one readable PyTorch file plus `weights.safetensors`.

The file defines an `nn.Module` whose layers carry the source model's names (`layer1.0.conv1` →
`self.layer1_0_conv1`) and literal sizes, a `forward` with one line per op, and `load()` that
reads the weights beside it. It imports only torch and safetensors, never asgnas-ir, and never
unpickles anything. A layer called twice in the source (shared weights) is one attribute called
twice. Output is deterministic: the same graph gives the same bytes.

Batch size: a reshape whose leading size equals its input's batch size is printed with
`x.shape[0]`, so the generated model accepts any batch size, not just the example's.

Layout: inputs and outputs keep the source model's layout. A channels-last graph (from Keras) holds
each value in a physical layout (`_layout.py`, as codegen-keras does the other way round): conv,
pools and batch/group/instance norm want the channel axis at 1 and get their input through one
cached `permute` per value; elementwise ops, concat, split, slice, pad, softmax and mean/sum keep the
layout they get and remap their axes; reshape, flatten, linear, layer norm, matmul, attention and the
graph outputs read the logical (source) layout. A channels-first graph needs no permutes at all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from asgnas_ir import __version__
from asgnas_ir.errors import CodegenError
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.graph import Graph, Param
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.naming import Namespace, sanitize
from asgnas_ir.pass_manager import Pass, register_pass
from asgnas_ir.passes.codegen._layout import (
    Perm,
    channel_to_front,
    identity,
    inverse,
    reduced,
    same_memory_order,
    transpose_axes,
)
from asgnas_ir.passes.codegen._printer import GeneratedCode, call, lit, lit_exact, wrap

# Attributes every nn.Module already has; a layer must not be named like one of them.
_MODULE_RESERVED = {
    "training", "forward", "train", "eval", "parameters", "named_parameters", "buffers", "named_buffers",
    "children", "named_children", "modules", "named_modules", "state_dict", "load_state_dict", "to", "cuda",
    "cpu", "float", "double", "half", "bfloat16", "type", "apply", "zero_grad", "register_buffer",
    "register_parameter", "register_module", "add_module", "get_submodule", "get_parameter", "get_buffer",
    "extra_repr", "requires_grad_", "share_memory", "dump_patches", "call_super_init", "compile", "ipu", "xpu",
    "mtia", "to_empty", "get_extra_state", "set_extra_state", "register_forward_hook", "register_forward_pre_hook",
    "register_backward_hook", "register_full_backward_hook", "T_destination",
}
_FORWARD_RESERVED = {"self", "torch", "nn", "F", "Path", "load_file"}

Emitter = Callable[["TorchPrinter", NodeBase], None]
EMITTERS: dict[Op, Emitter] = {}


def emits(*ops: Op) -> Callable[[Emitter], Emitter]:
    def add(fn: Emitter) -> Emitter:
        for op in ops:
            if op in EMITTERS:
                raise RuntimeError(f"torch emitter for '{op.value}' registered twice")
            EMITTERS[op] = fn
        return fn

    return add


def class_name(graph: Graph) -> str:
    raw = sanitize(graph.name)
    return raw[0].upper() + raw[1:] if raw else "Model"


class TorchPrinter:
    """Builds the `__init__` and `forward` bodies node by node."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.layers = Namespace(_MODULE_RESERVED | _FORWARD_RESERVED)
        self.locals = Namespace(_FORWARD_RESERVED)
        self.init: list[str] = []
        self.body: list[str] = []
        self.expr: dict[str, str] = {}
        self.weights: dict[str, np.ndarray] = {}
        self.uses_functional = False
        self._layer_of: dict[tuple[str, ...], str] = {}
        self.channels_last = graph.meta.layout == "channels_last"
        self.perm: dict[str, Perm] = {}
        self._views: dict[tuple[str, Perm], str] = {}

    # ---- helpers the emitters use --------------------------------------------------------------
    def x(self, node: NodeBase, index: int = 0) -> str:
        """Input `index` of `node` in the layout it is held in (see `held`)."""
        return self.expr[node.inputs[index]]

    def held(self, value: str) -> Perm:
        return self.perm.get(value) or identity(len(self.shape(value)))

    def view(self, value: str, perm: Perm) -> str:
        """`value` held in layout `perm`: its expression, or one cached `permute` of it."""
        current = self.held(value)
        if current == perm:
            return self.expr[value]
        key = (value, perm)
        if key not in self._views:
            rank = len(perm)
            suffix = {3: ("_nlc", "_ncl"), 4: ("_nhwc", "_nchw"), 5: ("_ndhwc", "_ncdhw")}.get(rank, ("_cl", "_cf"))
            hint = suffix[0] if perm == identity(rank) else suffix[1] if perm[1] == rank - 1 else "_t"
            name = self.locals.name(("view", value, perm), sanitize(self.expr[value]).removeprefix("self_") + hint)
            axes = transpose_axes(current, perm)
            self.body.append(f"{name} = {self.expr[value]}.permute({', '.join(str(a) for a in axes)})")
            self._views[key] = name
        return self._views[key]

    def logical(self, value: str) -> str:
        """`value` in its IR (source) layout."""
        return self.view(value, identity(len(self.shape(value))))

    def lx(self, node: NodeBase, index: int = 0) -> str:
        """Input `index` of `node` in its IR (source) layout."""
        return self.logical(node.inputs[index])

    def channel_front(self, value: str) -> Perm:
        """The layout torch's conv/pool/norm modules want `value` in: its channel axis at 1."""
        info = self.graph.values[value]
        if not self.channels_last or info.channel_axis is None:
            return identity(len(info.shape))
        return channel_to_front(len(info.shape), info.channel_axis)

    def spatial_x(self, node: NodeBase) -> tuple[str, Perm]:
        """Input 0 of a conv/pool/norm node with its channel axis at 1, and the layout of its output."""
        value = node.inputs[0]
        return self.view(value, self.channel_front(value)), self.channel_front(node.outputs[0])

    def axis(self, value: str, axis: int) -> int:
        """The physical index of logical `axis` of `value`."""
        return inverse(self.held(value))[axis]

    def shape(self, value: str) -> tuple[int, ...]:
        return self.graph.values[value].shape

    def param(self, node: NodeBase, role: str) -> Param:
        return self.graph.params[node.params[role]]

    def F(self, name: str) -> str:  # noqa: N802  (mirrors the conventional `F` alias)
        self.uses_functional = True
        return f"F.{name}"

    def layer(self, node: NodeBase, constructor: str, layouts: dict[str, str | None] | None = None) -> str | None:
        """Declare `self.<name> = constructor` once per set of params; returns the attribute, or
        None when an earlier node already declared it (shared weights)."""
        # one layer per op kind and params: a table tied to an output projection is two layers
        key = (node.op.value, *sorted(node.params.values()))
        if key in self._layer_of:
            return self._layer_of[key]
        name = self.layers.name(key, node.source or node.id)
        self._layer_of[key] = name
        self.init.append(f"self.{name} = {constructor}")
        for role, param_name in node.params.items():
            self.weights[f"{name}.{role}"] = self._to_layout(self.graph.params[param_name], param_name, (layouts or {}).get(role))
        return name

    def _to_layout(self, param: Param, name: str, target: str | None) -> np.ndarray:
        array = self.graph.weights.get(name)
        if array is None:
            raise CodegenError(f"param '@{name}' has no weights; compile the model with weights or load the IR with its .safetensors")
        if target and param.axes and param.axes != target and sorted(param.axes) == sorted(target):
            array = np.transpose(array, [param.axes.index(letter) for letter in target])
        return array

    def assign(self, node: NodeBase, expression: str, perm: Perm | None = None) -> None:
        """One line `out = expression`; the outputs are held in `perm` (default: logical)."""
        names = [self.locals.name(out, out) for out in node.outputs]
        self.body.append(f"{', '.join(names)} = {expression}")
        for out, name in zip(node.outputs, names, strict=True):
            self.expr[out] = name
            if perm is not None:
                self.perm[out] = perm

    def alias(self, node: NodeBase, expression: str, perm: Perm | None = None) -> None:
        self.expr[node.outputs[0]] = expression
        if perm is not None:
            self.perm[node.outputs[0]] = perm

    # ---- printing ----------------------------------------------------------------------------
    def print(self) -> str:
        for name in self.graph.inputs:
            self.expr[name] = self.locals.name(name, name)
        for node in self.graph.nodes:
            emitter = EMITTERS.get(node.op)
            if emitter is None:
                raise CodegenError(f"node '{node.id}' (op {node.op.value}, from '{node.source}') has no torch emitter")
            emitter(self, node)
        return self._module_text()

    def _module_text(self) -> str:
        graph = self.graph
        cls = class_name(graph)
        args = ", ".join(f"{self.expr[i]}: torch.Tensor" for i in graph.inputs)
        outputs = [self.logical(o) for o in graph.outputs]
        if graph.meta.output_kind == "tuple" or len(outputs) > 1:
            returns = "tuple[torch.Tensor, ...]"
            result = "(" + ", ".join(outputs) + ("," if len(outputs) == 1 else "") + ")"
        else:
            returns, result = "torch.Tensor", outputs[0]
        params = sum(p.numel for p in graph.params.values() if p.trainable)
        source = graph.meta.model_name or graph.name
        lines = [
            f'"""{cls}: generated by asgnas-ir {__version__} from the {graph.meta.framework or "?"} model {source}.',
            "",
            f"IR fingerprint {graph.fingerprint()}; {params:,} trainable parameters. This file needs only torch and",
            "safetensors; `load()` reads `weights.safetensors` from beside it. Edit freely.",
            *(
                [
                    "",
                    "Layout: inputs and outputs are channels-last, as in the source model; convolutions, pools and",
                    "norms run channels-first (torch's layout) on a value permuted once, before its first such use,",
                    "and permuted back before a reshape/flatten and at the outputs; axis arguments are written for",
                    "the layout the value is held in.",
                ]
                if self.channels_last
                else []
            ),
            '"""',
            "",
            "from __future__ import annotations",
            "",
            "from pathlib import Path",
            "",
            "import torch",
        ]
        if self.uses_functional:
            lines.append("import torch.nn.functional as F")
        lines += [
            "from safetensors.torch import load_file",
            "from torch import nn",
            "",
            "",
            f"class {cls}(nn.Module):",
            "    def __init__(self) -> None:",
            "        super().__init__()",
        ]
        lines += [wrapped for line in self.init for wrapped in wrap(line, "        ")]
        lines += ["", f"    def forward(self, {args}) -> {returns}:"]
        lines += [wrapped for line in self.body for wrapped in wrap(line, "        ")]
        lines += [
            f"        return {result}",
            "",
            "",
            f"def load(path: str | Path | None = None) -> {cls}:",
            '    """The model with the weights from `path` (default: weights.safetensors here), in eval mode."""',
            f"    model = {cls}()",
            '    weights = Path(path) if path is not None else Path(__file__).with_name("weights.safetensors")',
            "    model.load_state_dict(load_file(str(weights)))",
            "    return model.eval()",
            "",
        ]
        return "\n".join(lines)


def generate_torch(graph: Graph) -> GeneratedCode:
    """Print `graph` as `model.py` and collect the state dict for `weights.safetensors`."""
    printer = TorchPrinter(graph)
    text = printer.print()
    return GeneratedCode(files={"model.py": text}, weights=printer.weights)


# ---- emitters ---------------------------------------------------------------------------------


def _dims_suffix(rank: int) -> str:
    return f"{rank}d"


def _spatial_letters(axes: str | None) -> str:
    """The kernel's spatial letters in order (`OIHW` and `HWIO` -> `HW`)."""
    return "".join(letter for letter in axes or "" if letter not in "OI")


@emits(Op.CONV)
def _conv(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.ConvAttrs = node.attrs  # type: ignore[assignment]
    weight = p.param(node, "weight")
    n = len(weight.shape) - 2
    target = "OI" + _spatial_letters(weight.axes) if weight.axes and not weight.axes.startswith("OI") else weight.axes
    spatial = [d for d, letter in zip(weight.shape, weight.axes or "", strict=False) if letter not in "OI"]
    out_ch = weight.shape[weight.axes.index("O")]  # type: ignore[union-attr]
    in_ch = weight.shape[weight.axes.index("I")] * attrs.groups  # type: ignore[union-attr]
    symmetric = all(a == b for a, b in attrs.padding)
    x, out_perm = p.spatial_x(node)
    if not symmetric:
        flat = tuple(v for before, after in reversed(attrs.padding) for v in (before, after))
        x = call(p.F("pad"), x, lit_exact(flat))
    padding = tuple(a for a, _ in attrs.padding) if symmetric else 0
    ctor = call(
        f"nn.Conv{_dims_suffix(n)}",
        str(in_ch),
        str(out_ch),
        kernel_size=lit(tuple(spatial)),
        stride=None if set(attrs.stride) == {1} else lit(attrs.stride),
        padding=None if padding == 0 or set(padding) == {0} else lit(padding),  # type: ignore[arg-type]
        dilation=None if set(attrs.dilation) == {1} else lit(attrs.dilation),
        groups=None if attrs.groups == 1 else str(attrs.groups),
        bias=None if "bias" in node.params else "False",
        padding_mode=None if attrs.padding_mode == "zeros" else lit(attrs.padding_mode),
    )
    name = p.layer(node, ctor, {"weight": target})
    p.assign(node, f"self.{name}({x})", out_perm)


@emits(Op.CONV_TRANSPOSE)
def _conv_transpose(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.ConvTransposeAttrs = node.attrs  # type: ignore[assignment]
    weight = p.param(node, "weight")
    n = len(weight.shape) - 2
    spatial = [d for d, letter in zip(weight.shape, weight.axes or "", strict=False) if letter not in "OI"]
    in_ch = weight.shape[weight.axes.index("I")]  # type: ignore[union-attr]
    out_ch = weight.shape[weight.axes.index("O")] * attrs.groups  # type: ignore[union-attr]
    ctor = call(
        f"nn.ConvTranspose{_dims_suffix(n)}",
        str(in_ch),
        str(out_ch),
        kernel_size=lit(tuple(spatial)),
        stride=None if set(attrs.stride) == {1} else lit(attrs.stride),
        padding=None if set(attrs.padding) == {0} else lit(attrs.padding),
        output_padding=None if set(attrs.output_padding) == {0} else lit(attrs.output_padding),
        groups=None if attrs.groups == 1 else str(attrs.groups),
        bias=None if "bias" in node.params else "False",
        dilation=None if set(attrs.dilation) == {1} else lit(attrs.dilation),
    )
    target = "IO" + _spatial_letters(weight.axes) if weight.axes and not weight.axes.startswith("IO") else weight.axes
    name = p.layer(node, ctor, {"weight": target})
    x, out_perm = p.spatial_x(node)
    p.assign(node, f"self.{name}({x})", out_perm)


@emits(Op.LINEAR)
def _linear(p: TorchPrinter, node: NodeBase) -> None:
    weight = p.param(node, "weight")
    out_f, in_f = weight.shape[weight.axes.index("O")], weight.shape[weight.axes.index("I")]  # type: ignore[union-attr]
    ctor = call("nn.Linear", str(in_f), str(out_f), bias=None if "bias" in node.params else "False")
    name = p.layer(node, ctor, {"weight": "OI"})
    p.assign(node, f"self.{name}({p.lx(node)})")


def _channels(p: TorchPrinter, node: NodeBase) -> int:
    value = p.graph.values[node.inputs[0]]
    return value.shape[value.channel_axis]  # type: ignore[index]


def _norm_dims(p: TorchPrinter, node: NodeBase) -> str:
    rank = len(p.shape(node.inputs[0]))
    return _dims_suffix(max(1, rank - 2))


@emits(Op.BATCH_NORM)
def _batch_norm(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.BatchNormAttrs = node.attrs  # type: ignore[assignment]
    ctor = call(
        f"nn.BatchNorm{_norm_dims(p, node)}",
        str(_channels(p, node)),
        eps=None if attrs.eps == 1e-5 else lit(attrs.eps),
        momentum=None if attrs.momentum == 0.1 else lit(attrs.momentum),
        affine=None if "weight" in node.params else "False",
        track_running_stats=None if "running_mean" in node.params else "False",
    )
    name = p.layer(node, ctor)
    x, out_perm = p.spatial_x(node)
    p.assign(node, f"self.{name}({x})", out_perm)


@emits(Op.INSTANCE_NORM)
def _instance_norm(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.InstanceNormAttrs = node.attrs  # type: ignore[assignment]
    ctor = call(
        f"nn.InstanceNorm{_norm_dims(p, node)}",
        str(_channels(p, node)),
        eps=None if attrs.eps == 1e-5 else lit(attrs.eps),
        momentum=None if attrs.momentum == 0.1 else lit(attrs.momentum),
        affine="True" if "weight" in node.params else None,
        track_running_stats="True" if "running_mean" in node.params else None,
    )
    if node.params:
        name = p.layer(node, ctor)
    else:
        name = p.layers.name(("instance_norm", node.id), node.source or node.id)
        p.init.append(f"self.{name} = {ctor}")
    x, out_perm = p.spatial_x(node)
    p.assign(node, f"self.{name}({x})", out_perm)


@emits(Op.GROUP_NORM)
def _group_norm(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.GroupNormAttrs = node.attrs  # type: ignore[assignment]
    ctor = call(
        "nn.GroupNorm",
        str(attrs.num_groups),
        str(_channels(p, node)),
        eps=None if attrs.eps == 1e-5 else lit(attrs.eps),
        affine=None if "weight" in node.params else "False",
    )
    x, out_perm = p.spatial_x(node)
    if node.params:
        name = p.layer(node, ctor)
        p.assign(node, f"self.{name}({x})", out_perm)
    else:
        p.assign(node, call(p.F("group_norm"), x, str(attrs.num_groups), eps=lit(attrs.eps)), out_perm)


@emits(Op.LAYER_NORM)
def _layer_norm(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.LayerNormAttrs = node.attrs  # type: ignore[assignment]
    shape = tuple(p.shape(node.inputs[0])[a] for a in attrs.axes)
    normalized = str(shape[0]) if len(shape) == 1 else lit_exact(shape)
    if not node.params:
        p.assign(node, call(p.F("layer_norm"), p.lx(node), lit_exact(shape), eps=lit(attrs.eps)))
        return
    ctor = call(
        "nn.LayerNorm",
        normalized,
        eps=None if attrs.eps == 1e-5 else lit(attrs.eps),
        bias=None if "bias" in node.params else "False",
    )
    name = p.layer(node, ctor)
    p.assign(node, f"self.{name}({p.lx(node)})")


def _unary(template: Callable[[TorchPrinter, NodeBase, str], str]) -> Emitter:
    def emit(p: TorchPrinter, node: NodeBase) -> None:
        p.assign(node, template(p, node, p.x(node)), p.perm.get(node.inputs[0]))

    return emit


def _dropout_fn(p: TorchPrinter, node: NodeBase) -> str:
    if not node.attrs.channelwise:  # type: ignore[attr-defined]
        return "dropout"
    return f"dropout{len(p.shape(node.inputs[0])) - 2}d"


def _clamp(p: TorchPrinter, node: NodeBase, x: str) -> str:
    attrs: A.ClampAttrs = node.attrs  # type: ignore[assignment]
    if attrs.min == 0.0 and attrs.max == 6.0:
        return call(p.F("relu6"), x)
    return call("torch.clamp", x, min=None if attrs.min is None else lit(attrs.min), max=None if attrs.max is None else lit(attrs.max))


EMITTERS.update(
    {
        Op.RELU: _unary(lambda p, n, x: f"torch.relu({x})"),
        Op.SIGMOID: _unary(lambda p, n, x: f"torch.sigmoid({x})"),
        Op.TANH: _unary(lambda p, n, x: f"torch.tanh({x})"),
        Op.EXP: _unary(lambda p, n, x: f"torch.exp({x})"),
        Op.SQRT: _unary(lambda p, n, x: f"torch.sqrt({x})"),
        Op.NEG: _unary(lambda p, n, x: f"-{x}"),
        Op.POW: _unary(lambda p, n, x: f"torch.pow({x}, {lit(n.attrs.exponent)})"),
        Op.SILU: _unary(lambda p, n, x: call(p.F("silu"), x)),
        Op.HARDSWISH: _unary(lambda p, n, x: call(p.F("hardswish"), x)),
        Op.HARDSIGMOID: _unary(lambda p, n, x: call(p.F("hardsigmoid"), x)),
        Op.MISH: _unary(lambda p, n, x: call(p.F("mish"), x)),
        Op.CLAMP: _unary(_clamp),
        Op.LEAKY_RELU: _unary(lambda p, n, x: call(p.F("leaky_relu"), x, lit(n.attrs.negative_slope))),
        Op.GELU: _unary(
            lambda p, n, x: call(p.F("gelu"), x, approximate=None if n.attrs.approximate == "none" else lit(n.attrs.approximate))
        ),
        Op.ELU: _unary(lambda p, n, x: call(p.F("elu"), x, lit(n.attrs.alpha))),
        Op.SOFTPLUS: _unary(lambda p, n, x: call(p.F("softplus"), x, lit(n.attrs.beta), lit(n.attrs.threshold))),
        Op.DROPOUT: _unary(lambda p, n, x: call(p.F(_dropout_fn(p, n)), x, lit(n.attrs.p), "self.training")),
    }
)


@emits(Op.IDENTITY)
def _identity(p: TorchPrinter, node: NodeBase) -> None:
    p.alias(node, p.x(node), p.perm.get(node.inputs[0]))


_BINARY = {Op.ADD: "+", Op.SUB: "-", Op.MUL: "*", Op.DIV: "/"}


@emits(*_BINARY)
def _binary(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.BinaryAttrs = node.attrs  # type: ignore[assignment]
    symbol = _BINARY[node.op]
    if attrs.scalar is None:
        rank = len(p.shape(node.outputs[0]))
        held = [p.held(v) for v in node.inputs if len(p.shape(v)) == rank]
        perm = next((h for h in held if h != identity(rank)), identity(rank))
        a, b = (_operand(p, v, rank, perm) for v in node.inputs)
        p.assign(node, f"{a} {symbol} {b}", perm if perm != identity(rank) else None)
    elif attrs.reverse:
        p.assign(node, f"{lit(attrs.scalar)} {symbol} {p.x(node)}", p.perm.get(node.inputs[0]))
    else:
        p.assign(node, f"{p.x(node)} {symbol} {lit(attrs.scalar)}", p.perm.get(node.inputs[0]))


def _operand(p: TorchPrinter, value: str, rank: int, perm: Perm) -> str:
    """`value` as an operand of a rank-`rank` result held in `perm` (broadcasting as torch does)."""
    shape = p.shape(value)
    if len(shape) == rank:
        return p.view(value, perm)
    if perm == identity(rank) or all(d == 1 for d in shape):
        return p.logical(value)
    # a lower-rank operand of a permuted result: its leading 1s, then the same permutation
    full = (1,) * (rank - len(shape)) + tuple(shape)
    return f"{p.logical(value)}.reshape({', '.join(map(str, full))}).permute({', '.join(map(str, perm))})"


@emits(Op.CONCAT)
def _concat(p: TorchPrinter, node: NodeBase) -> None:
    rank = len(p.shape(node.outputs[0]))
    perm = next((p.held(v) for v in node.inputs if p.held(v) != identity(rank)), identity(rank))
    parts = ", ".join(p.view(i, perm) for i in node.inputs)
    axis = inverse(perm)[node.attrs.axis]  # type: ignore[attr-defined]
    p.assign(node, f"torch.cat([{parts}], dim={axis})", perm if perm != identity(rank) else None)


@emits(Op.SPLIT)
def _split(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.SplitAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    p.assign(node, f"torch.split({p.x(node)}, {list(attrs.sizes)}, dim={p.axis(value, attrs.axis)})", p.perm.get(value))


@emits(Op.SLICE)
def _slice(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.SliceAttrs = node.attrs  # type: ignore[assignment]
    step = "" if attrs.step == 1 else f":{attrs.step}"
    start = "" if attrs.start == 0 else str(attrs.start)
    value = node.inputs[0]
    index = [":"] * p.axis(value, attrs.axis) + [f"{start}:{attrs.stop}{step}"]
    p.assign(node, f"{p.x(node)}[{', '.join(index)}]", p.perm.get(value))


@emits(Op.RESHAPE)
def _reshape(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.ReshapeAttrs = node.attrs  # type: ignore[assignment]
    x = _source_order(p, node.inputs[0])
    in_shape = p.shape(node.inputs[0])
    dims = [str(d) for d in attrs.shape]
    if len(in_shape) >= 2 and attrs.shape and attrs.shape[0] == in_shape[0]:
        dims[0] = f"{x}.shape[0]"
    p.assign(node, f"{x}.reshape({', '.join(dims)})")


@emits(Op.FLATTEN)
def _flatten(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.FlattenAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    if p.held(value) != identity(len(p.shape(value))) and same_memory_order(p.shape(value), p.held(value)):
        x = p.x(node)  # held permuted, but in the source's element order: a reshape is enough
        dims = [f"{x}.shape[0]", *(str(d) for d in p.shape(node.outputs[0])[1:])]
        p.assign(node, f"{x}.reshape({', '.join(dims)})")
        return
    last = len(p.shape(node.inputs[0])) - 1
    end = "" if attrs.end_axis == last else f", {attrs.end_axis}"
    p.assign(node, f"torch.flatten({p.lx(node)}, {attrs.start_axis}{end})")


@emits(Op.PERMUTE)
def _permute(p: TorchPrinter, node: NodeBase) -> None:
    perm = tuple(node.attrs.perm)  # type: ignore[attr-defined]
    value, out = node.inputs[0], node.outputs[0]
    held = p.held(value)
    options = [(o, transpose_axes(held, tuple(perm[a] for a in o))) for o in (identity(len(perm)), p.channel_front(out))]
    out_perm, axes = next(((o, a) for o, a in options if a == identity(len(perm))), options[0])
    if axes == identity(len(perm)) and held != identity(len(perm)):
        p.alias(node, p.x(node), out_perm)  # the permute undoes the held layout
        return
    p.assign(node, f"{p.x(node)}.permute({', '.join(str(d) for d in axes)})", out_perm if out_perm != identity(len(perm)) else None)


def _source_order(p: TorchPrinter, value: str) -> str:
    """`value` with its elements in the source layout's row-major order (permuted only if needed)."""
    if same_memory_order(p.shape(value), p.held(value)):
        return p.expr[value]
    return p.logical(value)


@emits(Op.PAD)
def _pad(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.PadAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    pairs = list(attrs.pads)
    held = p.held(value)
    if held != identity(len(held)):
        full = [(0, 0)] * (len(held) - len(pairs)) + [tuple(pair) for pair in pairs]
        pairs = [full[axis] for axis in held]
    while pairs and pairs[0] == (0, 0):
        pairs.pop(0)
    flat = tuple(v for before, after in reversed(pairs) for v in (before, after))
    p.assign(
        node,
        call(
            p.F("pad"), p.x(node), lit_exact(flat),
            mode=None if attrs.mode == "constant" else lit(attrs.mode),
            value=lit(attrs.value) if attrs.mode == "constant" and attrs.value else None,
        ),
        p.perm.get(value),
    )


@emits(Op.MAX_POOL, Op.AVG_POOL)
def _pool(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.PoolAttrs = node.attrs  # type: ignore[assignment]
    n = len(attrs.kernel_size)
    kind = "max" if node.op is Op.MAX_POOL else "avg"
    x, out_perm = p.spatial_x(node)
    p.assign(
        node,
        call(
            p.F(f"{kind}_pool{n}d"),
            x,
            lit(attrs.kernel_size),
            stride=None if attrs.stride == attrs.kernel_size else lit(attrs.stride),
            padding=None if set(attrs.padding) <= {0} else lit(attrs.padding),
            dilation=None if kind == "avg" or not attrs.dilation or set(attrs.dilation) == {1} else lit(attrs.dilation),
            ceil_mode="True" if attrs.ceil_mode else None,
            count_include_pad=None if kind == "max" or attrs.count_include_pad else "False",
        ),
        out_perm,
    )


@emits(Op.ADAPTIVE_AVG_POOL, Op.ADAPTIVE_MAX_POOL)
def _adaptive_pool(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.AdaptivePoolAttrs = node.attrs  # type: ignore[assignment]
    kind = "avg" if node.op is Op.ADAPTIVE_AVG_POOL else "max"
    x, out_perm = p.spatial_x(node)
    p.assign(node, call(p.F(f"adaptive_{kind}_pool{len(attrs.output_size)}d"), x, lit(attrs.output_size)), out_perm)


@emits(Op.MEAN, Op.SUM)
def _reduce(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.ReduceAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    held = p.held(value)
    axes = attrs.axes if held == identity(len(held)) else tuple(sorted(p.axis(value, a) for a in attrs.axes))
    dim = str(axes[0]) if len(axes) == 1 else lit_exact(axes)
    keep = ", keepdim=True" if attrs.keepdim else ""
    out_perm = held if attrs.keepdim else reduced(held, attrs.axes)
    p.assign(node, f"{p.x(node)}.{node.op.value}(dim={dim}{keep})", out_perm)


@emits(Op.SOFTMAX)
def _softmax(p: TorchPrinter, node: NodeBase) -> None:
    value = node.inputs[0]
    p.assign(node, f"torch.softmax({p.x(node)}, dim={p.axis(value, node.attrs.axis)})", p.perm.get(value))  # type: ignore[attr-defined]


@emits(Op.EMBEDDING)
def _embedding(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.EmbeddingAttrs = node.attrs  # type: ignore[assignment]
    name = p.layer(node, call("nn.Embedding", str(attrs.num_embeddings), str(attrs.dim)), {"weight": "VO"})
    p.assign(node, f"self.{name}({p.lx(node)})")


@emits(Op.MATMUL)
def _matmul(p: TorchPrinter, node: NodeBase) -> None:
    p.assign(node, f"{p.lx(node, 0)} @ {p.lx(node, 1)}")


@emits(Op.ATTENTION)
def _attention(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.AttentionAttrs = node.attrs  # type: ignore[assignment]
    q, k, v = (p.lx(node, i) for i in range(3))
    p.assign(
        node,
        call(
            p.F("scaled_dot_product_attention"), q, k, v,
            attn_mask=p.lx(node, 3) if len(node.inputs) == 4 else None,
            is_causal="True" if attrs.causal else None,
            scale=lit(attrs.scale),
        ),
    )


@emits(Op.EXPAND)
def _expand(p: TorchPrinter, node: NodeBase) -> None:
    shape = node.attrs.shape  # type: ignore[attr-defined]
    p.assign(node, f"{p.lx(node)}.expand({', '.join(str(d) for d in shape)})")


@emits(Op.CONSTANT)
def _constant(p: TorchPrinter, node: NodeBase) -> None:
    param_name = node.params["value"]
    param = p.graph.params[param_name]
    key = (param_name,)
    if key not in p._layer_of:
        name = p.layers.name(key, param.source or param_name)
        p._layer_of[key] = name
        shape = ", ".join(str(d) for d in param.shape)
        if param.dtype != "float32":  # load_state_dict copies into the buffer's own dtype
            shape += f", dtype=torch.{param.dtype}"
        if param.trainable:
            p.init.append(f"self.{name} = nn.Parameter(torch.empty({shape}))")
        else:
            p.init.append(f'self.register_buffer("{name}", torch.empty({shape}))')
        p.weights[name] = p._to_layout(param, param_name, None)
    p.alias(node, f"self.{p._layer_of[key]}")


@emits(Op.OPAQUE)
def _opaque(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.OpaqueAttrs = node.attrs  # type: ignore[assignment]
    if attrs.kind == "module":
        raise CodegenError(
            f"node '{node.id}' is an opaque module call ({attrs.target}, from '{node.source}'); "
            "generated code cannot rebuild an unknown module. Add a converter for it (docs/adding_an_op.md)."
        )

    def render(value: object) -> str:
        if isinstance(value, dict) and set(value) == {"$input"}:
            return p.logical(node.inputs[value["$input"]])
        if isinstance(value, list):
            return "(" + ", ".join(render(v) for v in value) + ("," if len(value) == 1 else "") + ")"
        return repr(value)

    args = [render(a) for a in attrs.args]
    kwargs = [f"{k}={render(v)}" for k, v in attrs.kwargs.items()]
    if attrs.kind == "method":
        target = f"{args[0]}.{attrs.target.rsplit('.', 1)[-1]}"
        args = args[1:]
    elif attrs.target.startswith("torch.nn.functional."):
        target = p.F(attrs.target.rsplit(".", 1)[-1])
    elif attrs.target.startswith("torch."):
        target = attrs.target
    else:
        raise CodegenError(f"node '{node.id}' calls {attrs.target}, which generated code cannot import")
    p.assign(node, f"{target}({', '.join(args + kwargs)})")


@register_pass
class CodegenTorch(Pass):
    name = "codegen-torch"
    description = "Write the graph as one readable PyTorch file (model.py) plus weights.safetensors."
    kind = "codegen"
    requires = ("verify",)

    def run(self, graph: Graph, out_dir: str | Path = "generated") -> list[Path]:
        return generate_torch(graph).write(out_dir)
