"""The PyTorch printer behind codegen-torch: `TorchPrinter` (names, layers, the forward body, the
layout each value is held in) and the `EMITTERS` table the emitter modules fill, one entry per op.
See `torch_codegen.py` for what the generated file looks like."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import numpy as np

from asgnas_ir import __version__
from asgnas_ir.errors import CodegenError
from asgnas_ir.ir.graph import Graph, Param
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.naming import Namespace, sanitize
from asgnas_ir.passes.codegen._layout import (
    Perm,
    channel_to_front,
    identity,
    inverse,
    transpose_axes,
)
from asgnas_ir.passes.codegen._printer import registrar, wrap
from asgnas_ir.passes.codegen._symbols import SYMBOL_LOCALS, constant_pattern, dims, render, symbol_source
from asgnas_ir.passes.codegen._torch_tree import Decl, ModuleTree, ref

# Attributes every nn.Module already has; a layer must not be named like one of them.
_MODULE_RESERVED = {
    "training", "forward", "train", "eval", "parameters", "named_parameters", "buffers", "named_buffers",
    "children", "named_children", "modules", "named_modules", "state_dict", "load_state_dict", "to", "cuda",
    "cpu", "float", "double", "half", "bfloat16", "type", "apply", "zero_grad", "register_buffer",
    "register_parameter", "register_module", "add_module", "get_submodule", "get_parameter", "get_buffer",
    "extra_repr", "requires_grad_", "share_memory", "dump_patches", "call_super_init", "compile", "ipu", "xpu",
    "mtia", "to_empty", "get_extra_state", "set_extra_state", "register_forward_hook", "register_forward_pre_hook",
    "register_backward_hook", "register_full_backward_hook", "T_destination",
    "channels_last",  # the generated module's own flag, set by `load(channels_last=True)`
}
_FORWARD_RESERVED = {"self", "torch", "nn", "F", "Path", "load_file"}

Emitter = Callable[["TorchPrinter", NodeBase], None]
EMITTERS: dict[Op, Emitter] = {}


emits = registrar(EMITTERS, "torch")


def _masks_the_future(on_and_below: object, above: object) -> bool:
    """A causal triangle's two values: keep / drop flags (True / False, or 1 / 0 where the frontend
    lowered a boolean mask to float flags), or an additive 0 / large negative."""
    if isinstance(on_and_below, bool) or isinstance(above, bool):
        return on_and_below is True and above is False
    return (on_and_below, above) == (1, 0) or (on_and_below == 0 and isinstance(above, float) and above <= -1e4)


def _list_literal(names: list[str]) -> str:
    return "(" + ", ".join(json.dumps(n) for n in names) + ("," if len(names) == 1 else "") + ")"


def class_name(graph: Graph) -> str:
    raw = sanitize(graph.name)
    return raw[0].upper() + raw[1:] if raw else "Model"


class NotABlock(Exception):
    """A scope's nodes cannot stand alone as one generated class (see `_torch_blocks.py`)."""


class TorchPrinter:
    """Builds the `__init__` and `forward` bodies node by node.

    A printer writes one class: the model's own (`prefix` "") or one block of it (`prefix`
    "layer1.0", its nodes reading `block_inputs` from outside); layers are declared by their path
    relative to the class, so a block's text is the same for every instance of its structure."""

    def __init__(self, graph: Graph, *, prefix: str = "", block_inputs: list[str] | None = None) -> None:
        self.graph = graph
        self.prefix = prefix
        self.block_inputs = block_inputs
        types = {k[len(prefix) + 1 :]: v for k, v in graph.meta.modules.items() if k.startswith(prefix + ".")} if prefix else graph.meta.modules
        self.tree = ModuleTree(types, _MODULE_RESERVED)
        self.ties: list[str] = []
        # a block writes every conv setting, defaults included, so that instances with a stride of
        # 1 and of 2 print the same tokens and become one class with a `stride` argument
        self.explicit_settings = bool(prefix)
        self.classes: list[str] = []
        self.constants: list[str] = []  # weights kept out of the state_dict (see GraphMeta.computed)
        self.lists: dict[tuple[str, ...], str] = {}  # values held as one Python list (a DenseNet block's features)
        self.layers = Namespace(_MODULE_RESERVED | _FORWARD_RESERVED)
        self._readers: dict[str, set[Op]] | None = None  # param -> the ops that read it (built on first use)
        self.locals = Namespace(_FORWARD_RESERVED)
        self.init: list[str] = []
        self.body: list[str] = []
        self.expr: dict[str, str] = {}
        self.weights: dict[str, np.ndarray] = {}
        self.uses_functional = False
        self._layer_of: dict[tuple[str, ...], str] = {}
        self._constructor_of: dict[tuple[str, ...], str] = {}
        self._param_home: dict[str, tuple[str, str]] = {}  # IR param -> the first (layer path, role) holding it
        self.channels_last = graph.meta.layout == "channels_last"
        self.perm: dict[str, Perm] = {}
        self._views: dict[tuple[str, Perm], str] = {}
        self.prologue: list[str] = []
        self._symbol_locals: dict[str, str] = {}
        self._origins: dict[str, str] | None = None  # value -> "data" / "pinned" / "stored" (built on first use)

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

    def symbol(self, symbol: str) -> str:
        """The local holding a symbolic size (`batch = x.shape[0]`, bound once at the top of forward)."""
        if symbol not in self._symbol_locals:
            value, axis = symbol_source(self.graph, symbol) if self.block_inputs is None else self._block_symbol(symbol)
            local = self.locals.name(("symbol", symbol), SYMBOL_LOCALS.get(symbol, symbol.lower()))
            self.prologue.append(f"{local} = {self.expr[value]}.shape[{axis}]")
            self._symbol_locals[symbol] = local
        return self._symbol_locals[symbol]

    def device_source(self) -> str:
        """A tensor whose device a constant built in forward takes: the model's (or block's) first input."""
        return self.expr[self.graph.inputs[0] if self.block_inputs is None else self.block_inputs[0]]

    def _block_symbol(self, symbol: str) -> tuple[str, int]:
        for name in self.block_inputs or []:
            for axis, dim in enumerate(dims(self.graph, name)):
                if dim == symbol:
                    return name, axis
        raise NotABlock(f"no input of '{self.prefix}' carries the size {symbol}")

    def dim(self, value: str, axis: int) -> str:
        """Logical `axis` of `value` as code: its size, or the expression of its symbolic size."""
        return render(self.graph.values[value].symbolic[axis], self.symbol)

    def origin(self, value: str) -> str:
        """Where a value's dtype comes from when the model is loaded in another floating dtype
        (`load(dtype=torch.bfloat16)`): "data" (computed from the inputs by layers and ops) and
        "stored" (params, buffers and what is computed from them alone) follow the load dtype;
        "pinned" values have a dtype the code names: constants built inside forward (float32 rotary
        angles from `torch.arange`, a causal mask), casts (a padding mask's `.to(torch.float32)`),
        and what is computed from them with stored values alone, which torch promotes to float32."""
        if self._origins is None:
            origins = dict.fromkeys(self.graph.inputs, "data")
            for node in self.graph.nodes:
                found = [origins.get(v, "stored") for v in node.inputs]
                floating = {o for o, v in zip(found, node.inputs, strict=True) if self._floating(v)}
                if node.op is Op.CONSTANT:
                    sized = self.graph.values[node.outputs[0]].dims is not None
                    kind = "pinned" if sized and constant_pattern(self.graph, node)[0] != "expand" else "stored"
                elif node.op is Op.CAST:
                    kind = "pinned"
                elif node.params:  # a layer computes in its weights' dtype
                    kind = "data" if "data" in found else "stored"
                elif "data" in floating:
                    kind = "data"
                elif "pinned" in floating or not floating:  # integers in, floats out: torch's default dtype
                    kind = "pinned"
                else:
                    kind = "stored"
                origins.update(dict.fromkeys(node.outputs, kind))
            self._origins = origins
        return self._origins.get(value, "stored")

    def follow_dtype(self, node: NodeBase, operands: list[str]) -> list[str]:
        """`node`'s operand expressions (one per input), with each pinned floating value cast to the
        dtype of the first floating data operand. A model loaded in bfloat16 (`load(dtype=...)`) so
        computes its rotary angles and masks in float32, as the source wrote them, and rounds them
        once where they meet its activations (torch would otherwise promote the activations back to
        float32 and the next layer would refuse them); in float32 the cast returns its input."""
        floating = [self._floating(v) for v in node.inputs]
        data = next((i for i, v in enumerate(node.inputs) if floating[i] and self.origin(v) == "data"), None)
        if data is None:
            return operands
        like = self.expr[node.inputs[data]]
        return [
            f"{expression}.to({like}.dtype)" if floating[i] and self.origin(v) == "pinned" else expression
            for i, (v, expression) in enumerate(zip(node.inputs, operands, strict=True))
        ]

    def _floating(self, value: str) -> bool:
        return self.graph.values[value].dtype.startswith(("float", "bfloat"))

    def param(self, node: NodeBase, role: str) -> Param:
        return self.graph.params[node.params[role]]

    def F(self, name: str) -> str:  # noqa: N802  (mirrors the conventional `F` alias)
        self.uses_functional = True
        return f"F.{name}"

    def layer(self, node: NodeBase, constructor: str, layouts: dict[str, str | None] | None = None) -> str:
        """Declare `self.<name> = constructor` once per op kind and set of params and return the attribute.

        A layer's identity is its op, its params and its settings (the constructor text): a later node
        with the same params and the same settings calls the same module (shared weights). The same
        params with other settings (a stride, padding or dilation of its own) cannot be that module; an
        emitter that can call the functional form on the first module's params asks `owner` first, and
        any other emitter reaching here is refused rather than given the first node's settings."""
        # one layer per op kind and params: a table tied to an output projection is two layers
        key = (node.op.value, *sorted(node.params.values()))
        constructor = self._in_dtype(node, constructor)
        if key in self._layer_of:
            if self._constructor_of[key] != constructor:
                name = self._layer_of[key].strip("\x01\x02")
                raise CodegenError(
                    f"node '{node.id}' (op {node.op.value}, from '{node.source}') uses the params of layer '{name}' with "
                    f"other settings ({constructor} vs {self._constructor_of[key]}); generated code has no functional "
                    "form of this op to share them through"
                )
            return self._layer_of[key]
        path = self._place(key, self._module_path(node), node.source or node.id)
        name = ref(path)
        self._layer_of[key] = name
        self._constructor_of[key] = constructor
        self.tree.declare(path, Decl("module", constructor))
        for role, param_name in node.params.items():
            array = self._to_layout(self.graph.params[param_name], param_name, (layouts or {}).get(role))
            self.weights[f"{path}.{role}"] = array
            home = self._param_home.setdefault(param_name, (path, role))
            if home != (path, role) and self._same_tensor(self.weights[".".join(home)], array):
                # One param under two layers (an LM head tied to the token embedding): the generated
                # model keeps it one Parameter, so it counts once and stays tied when trained further.
                # Both keys stay in the weights file, as in the module's own state_dict.
                self.ties.append(f"self.{name}.{role} = self.{ref(home[0])}.{home[1]}")
        return name

    def stateless(self, node: NodeBase, constructor: str) -> str:
        """A module without params (an instance norm without affine weights), declared flat."""
        path = self._place(("stateless", node.id), None, node.source or node.id)
        self.tree.declare(path, Decl("module", constructor))
        return ref(path)

    def tensor(self, param_name: str, layout: str | None = None) -> str:
        """A param read directly (a class token, a layer-scale vector, MultiheadAttention's packed
        `in_proj_weight`), declared as an `nn.Parameter` (a buffer when not trainable) at its
        source path; returns the handle forward code writes after `self.`."""
        key = (param_name,)
        if key not in self._layer_of:
            param = self.graph.params[param_name]
            path = self._place(key, param.source or None, param.source or param_name)
            array = self._to_layout(param, param_name, layout)
            shape = ", ".join(str(d) for d in array.shape) or "()"  # a 0-d param (an ONNX scalar initializer)
            if param.dtype != "float32":  # load_state_dict copies into the buffer's own dtype
                shape += f", dtype=torch.{param.dtype}"
            computed = not param.trainable and param.source in self.graph.meta.computed
            self.tree.declare(path, Decl("param" if param.trainable else "constant" if computed else "buffer", shape))
            self.weights[path] = array
            if computed:
                self.constants.append(path)
            self._layer_of[key] = ref(path)
        return self._layer_of[key]

    def _place(self, key: tuple, source_path: str | None, hint: str) -> str:
        """Where a declaration lives in this class: its source path (relative to a block's prefix)
        when the tree can hold it there, else a flat attribute named after `hint`."""
        if source_path is not None and self.prefix:
            source_path = source_path[len(self.prefix) + 1 :] if source_path.startswith(self.prefix + ".") else None
        if source_path is not None and self.tree.fits(source_path):
            return source_path
        if self.prefix:
            raise NotABlock(f"'{hint}' has no path inside '{self.prefix}'")
        name = self.layers.name(key, hint)
        while not self.tree.fits(name):
            name = self.layers.name((key, name), name + "_")
        return name

    def readers(self, param_name: str) -> set[Op]:
        """The op kinds that read `param_name`."""
        self._module_path_index()
        return self._readers[param_name]  # type: ignore[index]

    def loose_params(self, node: NodeBase) -> bool:
        """Whether `node`'s params belong to no module of their own kind (a parent's bare parameter,
        such as MultiheadAttention's `in_proj_weight`), and only nodes of its op read them: the
        emitter then applies them functionally, declared at their own state_dict keys."""
        if self.graph.meta.framework != "torch":  # Keras `dense/kernel`: a layer of our own reads better
            return False
        return self._module_path(node) is None and all(self.readers(name) == {node.op} for name in node.params.values())

    def _module_path(self, node: NodeBase) -> str | None:
        """The source module that owns `node`'s params (`model.layers.0.self_attn.q_proj` for
        `...q_proj.weight` and `...q_proj.bias`), or None when they have no common owner. An exported
        graph names its nodes after the export (`node_linear_3`); the params keep the source model's
        state_dict keys, so they name the layer the way the user knows it."""
        self._module_path_index()
        assert self._readers is not None
        owners = set()
        for role, param_name in node.params.items():
            if len(self._readers[param_name]) > 1:
                return None  # a table tied to an LM head: each layer keeps its own node's name
            source = self.graph.params[param_name].source or ""
            owner, dot, leaf = source.rpartition(".")
            if not dot or leaf != role:  # `in_proj_weight` is not a module's own `weight`
                return None
            owners.add(owner)
        return owners.pop() if len(owners) == 1 else None

    def _module_path_index(self) -> None:
        if self._readers is None:
            self._readers = {}
            for other in self.graph.nodes:
                for name in other.params.values():
                    self._readers.setdefault(name, set()).add(other.op)

    @staticmethod
    def _same_tensor(first: np.ndarray, second: np.ndarray) -> bool:
        """Whether two layers can hold one Parameter for a param: the same array in both layouts (a
        square weight read transposed by the second layer cannot be shared)."""
        return first.shape == second.shape and first.dtype == second.dtype and (first is second or np.array_equal(first, second))

    def owner(self, node: NodeBase, constructor: str) -> str | None:
        """The layer that already holds `node`'s params under settings other than `constructor`, else
        None (then `layer` serves the node). The emitter calls the functional form with that layer's
        params, so the weights stay one set, under the first layer's state_dict keys."""
        key = (node.op.value, *sorted(node.params.values()))
        if key in self._layer_of and self._constructor_of[key] != self._in_dtype(node, constructor):
            return self._layer_of[key]
        return None

    def dtype(self, node: NodeBase) -> str:
        """The floating dtype of `node`'s params (the IR's name: "float32", "float16", ...)."""
        floating = {self.graph.params[name].dtype for name in node.params.values()}
        floating = {d for d in floating if d.startswith(("float", "bfloat"))}
        if len(floating) > 1:
            raise CodegenError(
                f"node '{node.id}' (op {node.op.value}, from '{node.source}') has params in several dtypes "
                f"({', '.join(sorted(floating))}); a torch layer holds one. Cast the model to one dtype first."
            )
        params = floating.pop() if floating else "float32"
        # a Keras mixed-precision layer (float32 variables, float16 compute; frontends/keras/policies.py):
        # the torch layer holds its weights rounded once to the compute dtype at load, the values
        # Keras' autocast reads at every call, so the arithmetic is the same
        compute = [self.graph.values[v].dtype for v in node.inputs[:1]]
        if node.params and compute and compute[0] != params and compute[0].startswith(("float", "bfloat")):
            return compute[0]
        return params

    def _in_dtype(self, node: NodeBase, constructor: str) -> str:
        """`constructor` with `dtype=torch.<d>` when the params are not float32: torch layers are built
        in float32 and `load_state_dict` would silently round float64 weights into them."""
        dtype = self.dtype(node)
        if dtype == "float32" or not constructor.endswith(")"):
            return constructor
        separator = "" if constructor.endswith("()") else ", "
        return f"{constructor[:-1]}{separator}dtype=torch.{dtype})"

    def _to_layout(self, param: Param, name: str, target: str | None) -> np.ndarray:
        array = self.graph.weights.get(name)
        if array is None:
            raise CodegenError(f"param '@{name}' has no weights; compile the model with weights or load the IR with its .safetensors")
        if target and param.axes and param.axes != target and sorted(param.axes) == sorted(target):
            array = np.transpose(array, [param.axes.index(letter) for letter in target])
        return array

    def assign(self, node: NodeBase, expression: str, perm: Perm | None = None) -> None:
        """One line `out = expression`; the outputs are held in `perm` (default: logical)."""
        # a layer's output is named after the layer (`model_layers_0_mlp_up_proj`), as fx names it; an
        # exported graph's own value names (`linear_3`, `val_302`) say nothing to the reader
        owner = self._module_path(node) if node.params and len(node.outputs) == 1 else None
        names = [self.locals.name(out, self.hint(owner or out)) for out in node.outputs]
        self.body.append(f"{', '.join(names)} = {expression}")
        for out, name in zip(node.outputs, names, strict=True):
            self.expr[out] = name
            if perm is not None:
                self.perm[out] = perm

    def line(self, node: NodeBase, hint: str, expression: str) -> str:
        """A helper line of `node`'s decomposition, `<output>_<hint> = expression`; returns the name."""
        name = self.locals.name(("helper", node.id, hint), f"{self.hint(node.outputs[0])}_{hint}")
        self.body.append(f"{name} = {expression}")
        return name

    def hint(self, name: str) -> str:
        """A local's name from a value or module name; inside a block, relative to the block and
        without the graph-wide counters (`layer2_0_conv1` -> `conv1`, `iadd_7` -> `iadd`), so every
        instance prints the same text."""
        if not self.prefix:
            return name
        name = sanitize(name)
        stem = sanitize(self.prefix) + "_"
        name = name[len(stem) :] if name.startswith(stem) else name
        return re.sub(r"_\d+(?=_|$)", "", name) or "value"

    def alias(self, node: NodeBase, expression: str, perm: Perm | None = None) -> None:
        self.expr[node.outputs[0]] = expression
        if perm is not None:
            self.perm[node.outputs[0]] = perm

    # ---- printing ----------------------------------------------------------------------------
    def print(self) -> str:
        from asgnas_ir.passes.codegen._torch_blocks import plan_blocks

        for name in self.graph.inputs:
            self.expr[name] = self.locals.name(name, name)
        blocks = plan_blocks(self)
        index = 0
        nodes = self.graph.nodes
        while index < len(nodes):
            block = blocks.get(index)
            if block is not None:
                block.call(self)
                index = block.end
                continue
            self.emit(nodes[index])
            index += 1
        return self._module_text()

    def emit(self, node: NodeBase) -> None:
        emitter = EMITTERS.get(node.op)
        if emitter is None:
            raise CodegenError(f"node '{node.id}' (op {node.op.value}, from '{node.source}') has no torch emitter")
        emitter(self, node)

    def init_lines(self) -> list[str]:
        """`__init__`'s statements after `super().__init__()`: the module tree, then tied params."""
        return [self.tree.resolve(line) for line in [*self.tree.init_lines(), *self.init, *self.ties]]

    def forward_lines(self) -> list[str]:
        return [self.tree.resolve(line) for line in self.prologue + self.body]

    def _is_causal_lm(self) -> bool:
        """Whether the graph is a causal language model generated code can decode with: token ids [N, S]
        in (an attention mask of the same shape may follow), logits [N, S, vocab] out first, and a
        causal rule inside (a causal attention op or a causal triangle that follows S), so position
        t's logits never read a later token and appending one leaves the earlier logits unchanged."""
        graph = self.graph
        if not graph.inputs or len(graph.inputs) > 2 or not graph.outputs:
            return False
        ids, logits = graph.values[graph.inputs[0]], graph.values[graph.outputs[0]]
        if ids.dtype not in ("int64", "int32") or len(ids.symbolic) != 2 or not isinstance(ids.symbolic[1], str):
            return False
        if len(graph.inputs) == 2 and graph.values[graph.inputs[1]].symbolic != ids.symbolic:
            return False
        if len(logits.symbolic) != 3 or logits.symbolic[:2] != ids.symbolic or not logits.dtype.startswith(("float", "bfloat")):
            return False
        for node in graph.nodes:
            if node.op is Op.ATTENTION and node.attrs.causal:  # type: ignore[union-attr]
                return True
            if node.op is Op.CONSTANT and graph.values[node.outputs[0]].dims is not None:
                try:
                    kind, value = constant_pattern(graph, node)
                except CodegenError:
                    continue
                if kind == "triangle" and _masks_the_future(*value):  # type: ignore[misc]
                    return True
        return False

    def _generate_text(self, returns: str) -> list[str]:
        """A greedy `generate` for a causal language model (see `_is_causal_lm`), else nothing."""
        if not self._is_causal_lm():
            return []
        graph = self.graph
        ids = self.expr[graph.inputs[0]]
        masked = len(graph.inputs) == 2
        logits = {"torch.Tensor": "out", "tuple[torch.Tensor, ...]": "out[0]"}.get(returns, "next(iter(out.values()))")
        call_args = f"{ids}, attention_mask" if masked else ids
        lines = [
            "",
            "    @torch.no_grad()",
            f"    def generate(self, {ids}: torch.Tensor, max_new_tokens: int"
            + (", attention_mask: torch.Tensor | None = None" if masked else "")
            + ") -> torch.Tensor:",
            '        """Greedy decoding: append the most likely next token `max_new_tokens` times.',
            "",
            "        Each step runs the whole sequence again (no key/value cache, see the project's docs on",
            "        generation); the causal mask keeps earlier positions' logits as they were.",
            '        """',
        ]
        if masked:
            lines.append(f"        attention_mask = torch.ones_like({ids}) if attention_mask is None else attention_mask")
        lines += [
            "        for _ in range(max_new_tokens):",
            f"            out = self({call_args})",
            f"            next_token = {logits}[:, -1].argmax(dim=-1, keepdim=True).to({ids}.dtype)",
            f"            {ids} = torch.cat([{ids}, next_token], dim=1)",
        ]
        if masked:
            lines.append("            attention_mask = torch.cat([attention_mask, torch.ones_like(next_token)], dim=1)")
        lines.append(f"        return {ids}")
        return lines

    def _module_text(self) -> str:
        graph = self.graph
        cls = class_name(graph)
        args = ", ".join(f"{self.expr[i]}: torch.Tensor" for i in graph.inputs)
        outputs = [self.logical(o) for o in graph.outputs]
        if graph.meta.output_kind == "dict":  # the source model's dict of outputs, by the same keys
            returns = "dict[str, torch.Tensor]"
            keys = [graph.meta.io_names.get(o, o) for o in graph.outputs]
            result = "{" + ", ".join(f"{json.dumps(k)}: {o}" for k, o in zip(keys, outputs, strict=True)) + "}"
        elif graph.meta.output_kind == "tuple" or len(outputs) > 1:
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
        ]
        for text in self.classes:
            lines += [text, "", ""]
        lines += [
            f"class {cls}(nn.Module):",
            "    def __init__(self) -> None:",
            "        super().__init__()",
        ]
        nhwc = self._nhwc_inputs()
        if nhwc:
            lines.append("        self.channels_last = False  # load(channels_last=True) sets it")
        lines += [wrapped for line in self.init_lines() for wrapped in wrap(line, "        ")]
        lines += ["", f"    def forward(self, {args}) -> {returns}:"]
        if nhwc:
            lines.append("        # load(channels_last=True): the convolutions read NHWC memory")
            lines.append("        if self.channels_last:")
            lines += [f"            {x} = {x}.contiguous(memory_format=torch.channels_last)" for x in nhwc]
        lines += [wrapped for line in self.forward_lines() for wrapped in wrap(line, "        ")]
        lines += [f"        return {result}"]
        lines += self._generate_text(returns)
        lines += ["", ""] + self._load_text(cls, nhwc)
        return "\n".join(lines)

    def _nhwc_inputs(self) -> list[str]:
        """The image inputs forward converts to channels-last memory when loaded with
        `channels_last=True`: 4-D floating inputs with their channels at axis 1, in a model that
        `channels_last` applies to. A channels-last graph (from Keras) needs none: permuting its NHWC
        input to NCHW already gives the convolutions channels-last memory."""
        if self._channels_last_refusal() is not None:
            return []
        return [
            self.expr[name] for name in self.graph.inputs
            if len(self.shape(name)) == 4 and self._floating(name) and self.graph.values[name].channel_axis == 1
        ]

    def _channels_last_refusal(self) -> str | None:
        """Why `load(channels_last=True)` cannot apply to this model, or None. torch's channels_last
        is a 4-D memory format: it speeds up 2-D convolutions, means nothing to a model without one,
        and `Module.to` refuses it for the 5-D weights of a 3-D convolution."""
        convs = [self.graph.params[n.params["weight"]] for n in self.graph.nodes if n.op in (Op.CONV, Op.CONV_TRANSPOSE)]
        if any(len(w.shape) == 5 for w in convs):
            return "has 3-D convolutions, whose 5-D weights torch's channels_last format cannot hold"
        if not any(len(w.shape) == 4 for w in convs):
            return "has no 2-D convolution, so channels-last memory would change nothing"
        return None

    def _load_text(self, cls: str, nhwc: list[str]) -> list[str]:
        """`load()`: the weights beside the file, then the deployment options (device, a floating
        dtype for every param and buffer, channels-last memory for 2-D conv nets)."""
        refusal = self._channels_last_refusal()
        # a float-to-float cast rounds on purpose (a Keras mixed-precision policy): with every param in
        # another dtype, its float16 values would meet bfloat16 layers
        rounding = [n for n in self.graph.nodes if n.op is Op.CAST and self._floating(n.inputs[0])]
        casts = sorted({n.attrs.dtype for n in rounding if n.attrs.dtype != self.graph.values[n.inputs[0]].dtype})  # type: ignore[attr-defined]
        lines = [
            "def load(",
            "    path: str | Path | None = None,",
            "    *,",
            "    device: str | torch.device | None = None,",
            "    dtype: torch.dtype | None = None,",
            "    channels_last: bool = False,",
            f") -> {cls}:",
            '    """The model with the weights from `path` (default: weights.safetensors here), in eval mode.',
            "",
            "    device: where it runs (\"cuda\", a torch.device; default: torch's default device).",
            "    dtype: a floating dtype (torch.bfloat16, torch.float16) for every floating parameter and buffer;",
            "    feed it inputs of that dtype. channels_last: hold 4-D weights and images in torch.channels_last",
            "    (NHWC) memory, the layout fast convolution kernels want (the same outputs, up to rounding).",
            '    """',
            "    if dtype is not None and not dtype.is_floating_point:",
            '        raise ValueError(f"dtype must be a floating dtype such as torch.bfloat16, not {dtype}")',
        ]
        if casts:
            lines += [
                "    if dtype is not None:",
                "        raise ValueError(",
                f'            "{cls} rounds values to {", ".join(casts)} itself (a mixed-precision source); "',
                '            "load it without dtype="',
                "        )",
            ]
        if refusal is not None:
            lines += [
                "    if channels_last:",
                "        raise ValueError(",
                f'            "{cls} {refusal}; "',
                '            "load it without channels_last=True"',
                "        )",
            ]
        lines += [
            f"    model = {cls}()",
            '    weights = Path(path) if path is not None else Path(__file__).with_name("weights.safetensors")',
        ]
        if self.constants:
            # the source computes these in forward, so its state_dict (and ours) has no key for them
            lines += [
                "    state = load_file(str(weights))",
                f"    for name in {_list_literal(self.constants)}:",
                "        model.get_buffer(name).copy_(state.pop(name))",
                "    model.load_state_dict(state)",
            ]
        else:
            lines += ["    model.load_state_dict(load_file(str(weights)))"]
        lines += [
            "    if device is not None or dtype is not None:",
            "        model.to(device=device, dtype=dtype)",
        ]
        if refusal is None:
            lines += [
                "    if channels_last:",
                "        model.to(memory_format=torch.channels_last)",
                *(["        model.channels_last = True"] if nhwc else []),
            ]
        lines += ["    return model.eval()", ""]
        return lines
