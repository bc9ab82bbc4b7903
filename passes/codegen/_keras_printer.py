"""The KerasPrinter that codegen-keras prints a Functional model with, and the `KERAS_EMITTERS` table.

Every IR value is held in the generated code in a *physical* layout: a permutation `P` of its
logical (IR) axes, physical axis j being logical axis P[j]. Graph inputs and outputs are logical.
Convolutions, pools and spatial norms of a channels-first graph (from torch or ONNX) ask for their
input channels-last (`P = (0, 2, ..., r-1, 1)`) and produce channels-last values; elementwise ops,
concat, split, slice, pad, softmax and reductions keep whatever layout their input has and remap
their axis attributes through `P`; reshape, flatten, expand, linear on a non-trailing channel axis,
matmul and attention want the logical layout. `view(value, P)` emits one `keras.ops.transpose` per
value and layout (cached), so a graph input feeding several convolutions is transposed once.

The printer owns naming (layer names from the source, unique; local names from the IR values) and
the weights dict (`<layer name>/<variable>` → array, which is each Keras variable's `path`). It
lives apart from the emitters so that the family modules (`keras_emitters_*.py`) can register into
the table without importing `keras_codegen`. Keras itself is never imported: this writes text.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable

import numpy as np

from asgnas_ir import __version__
from asgnas_ir.errors import CodegenError
from asgnas_ir.ir.graph import Graph, Param
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.naming import Namespace, sanitize
from asgnas_ir.passes.codegen._layout import Perm, channels_last, identity, inverse, same_memory_order
from asgnas_ir.passes.codegen._printer import call, lit_exact, registrar, wrap
from asgnas_ir.passes.codegen._symbols import fixing

Emitter = Callable[["KerasPrinter", NodeBase], None]
KERAS_EMITTERS: dict[Op, Emitter] = {}

__all__ = ["KERAS_EMITTERS", "KerasPrinter", "Perm", "channels_last", "emits", "float_lit", "identity", "inverse", "same_memory_order"]

_RESERVED = {"keras", "layers", "Path", "load_file", "build", "load", "Constant", "model", "weights", "path", "variable"}


emits = registrar(KERAS_EMITTERS, "keras")


_SUFFIX = {3: ("_ncl", "_nlc"), 4: ("_nchw", "_nhwc"), 5: ("_ncdhw", "_ndhwc")}


class KerasPrinter:
    """Builds the body of `build()` node by node; emitters call `assign`, `alias`, `layer` and `view`."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.channels_first = graph.meta.layout != "channels_last"
        self.layer_names = Namespace()
        self.locals = Namespace(_RESERVED)
        self.body: list[str] = []
        self.expr: dict[str, str] = {}
        self.perm: dict[str, Perm] = {}
        self.weights: dict[str, np.ndarray] = {}
        self.uses_constant = False
        self._views: dict[tuple[str, Perm], str] = {}
        self._layer_of: dict[tuple, str] = {}
        self._constants: dict[tuple, str] = {}
        self.constant_of: dict[str, str] = {}  # value produced by a constant node -> its param
        self._settings_of: dict[tuple, str] = {}
        self._uses = Counter(self._layer_key(node) for node in graph.nodes if node.params and node.op is not Op.CONSTANT)
        self.dtype = _model_dtype(graph)

    # ---- helpers the emitters use --------------------------------------------------------------
    def shape(self, value: str) -> tuple[int, ...]:
        return self.graph.values[value].shape

    def rank(self, value: str) -> int:
        return len(self.shape(value))

    def param(self, node: NodeBase, role: str) -> Param:
        return self.graph.params[node.params[role]]

    def array(self, node: NodeBase, role: str, target: str | None = None) -> np.ndarray:
        """The weights of `node`'s param `role`, transposed from its stored axes to `target` letters."""
        name = node.params[role]
        array = self.graph.weights.get(name)
        if array is None:
            raise CodegenError(f"param '@{name}' has no weights; compile the model with weights or load the IR with its .safetensors")
        axes = self.graph.params[name].axes
        if target and axes and axes != target and sorted(axes) == sorted(target):
            array = np.transpose(array, [axes.index(letter) for letter in target])
        return np.ascontiguousarray(array)

    def spatial_perm(self, node: NodeBase, value: str) -> Perm:
        """The physical layout a conv/pool wants: channels-last (the logical one for a Keras graph)."""
        rank = self.rank(value)
        if getattr(node.attrs, "channels_last", False) or not self.channels_first:
            return identity(rank)
        return channels_last(rank)

    def channel_axis(self, value: str) -> int:
        """The physical index of `value`'s channel axis (its last axis when the IR knows none)."""
        info = self.graph.values[value]
        logical = len(info.shape) - 1 if info.channel_axis is None else info.channel_axis
        return inverse(self.perm[value])[logical]

    def view(self, value: str, perm: Perm) -> str:
        """`value` held in layout `perm`: its expression, or a cached transpose of it."""
        current = self.perm[value]
        if current == perm:
            return self.expr[value]
        key = (value, perm)
        if key not in self._views:
            axes = tuple(inverse(current)[axis] for axis in perm)
            rank = len(perm)
            base = sanitize(self.expr[value])
            suffix = _SUFFIX.get(rank, ("_cf", "_cl"))
            suffix_name = suffix[0] if perm == identity(rank) else suffix[1] if perm == channels_last(rank) else "_t"
            name = self.locals.name(("view", value, perm), base + suffix_name)
            self.body.append(f"{name} = keras.ops.transpose({self.expr[value]}, {lit_exact(axes)})")
            self._views[key] = name
        return self._views[key]

    def logical(self, value: str) -> str:
        return self.view(value, identity(self.rank(value)))

    def x(self, node: NodeBase, index: int = 0) -> str:
        """Input `index` of `node` in the layout it already has."""
        return self.expr[node.inputs[index]]

    def assign(self, node: NodeBase, expression: str, perm: Perm | None = None) -> None:
        """One line `out = expression`; the outputs are held in `perm` (default: logical)."""
        names = [self.locals.name(out, out) for out in node.outputs]
        self.body.append(f"{', '.join(names)} = {expression}")
        for out, name in zip(node.outputs, names, strict=True):
            self.expr[out] = name
            self.perm[out] = perm if perm is not None else identity(self.rank(out))

    def dims(self, value: str) -> tuple[int | str, ...]:
        """`value`'s sizes as the generated Keras model has them: the batch symbolic (`keras.Input`
        leaves it None), every other symbol at the example's size, which the Inputs declare."""
        fixed = {sym: size for sym, size in self.graph.meta.symbols.items() if sym != "N"}
        return fixing(self.graph.values[value].symbolic, fixed)

    def line(self, node: NodeBase, hint: str, expression: str) -> str:
        """A helper line of `node`'s decomposition, `<output>_<hint> = expression`; returns the name."""
        name = self.locals.name(("helper", node.id, hint), f"{node.outputs[0]}_{hint}")
        self.body.append(f"{name} = {expression}")
        return name

    def alias(self, node: NodeBase, expression: str, perm: Perm) -> None:
        self.expr[node.outputs[0]] = expression
        self.perm[node.outputs[0]] = perm

    @staticmethod
    def _layer_key(node: NodeBase) -> tuple:
        return (node.op.value, *sorted(node.params.values()))

    def layer_name(self, node: NodeBase, suffix: str = "") -> str:
        """A unique Keras layer name from the node's source (`layer1.0.conv1` → `layer1_0_conv1`)."""
        base = (node.source or node.id) + suffix
        return self.layer_names.name(("node", node.id, suffix), base)

    def layer(self, node: NodeBase, cls: str, *args: str, weights: dict[str, np.ndarray] | None = None, **kwargs: str | None) -> str:
        """The expression of a Keras layer `layers.<cls>(...)` for `node`, to be called on its input.

        A node with params is one layer per op kind, set of params and settings: a layer called by
        several nodes (shared weights) is bound to a local once and that name is returned. The same
        params with other settings cannot be that layer; an emitter that can apply the op's
        `keras.ops` form to the first layer's variables asks `owner` first, any other is refused here.
        `weights` maps each of the layer's variables to its array."""
        key = self._layer_key(node) if node.params else None
        settings = call(cls, *args, **kwargs)
        if key is not None and key in self._layer_of:
            if self._settings_of[key] != settings:
                raise CodegenError(
                    f"node '{node.id}' (op {node.op.value}, from '{node.source}') uses the weights of layer "
                    f"'{self._layer_of[key]}' with other settings ({settings} vs {self._settings_of[key]}); Keras "
                    "layers cannot share variables across settings and this op has no keras.ops form here"
                )
            return self._layer_of[key]
        name = self.layer_names.name(key or ("node", node.id, ""), node.source or node.id)
        ctor = call(f"layers.{cls}", *args, **kwargs, dtype=self.policy_arg(node), name=f'"{name}"')
        for variable, array in (weights or {}).items():
            self.weights[f"{name}/{variable}"] = array
        if key is not None and self._uses[key] > 1:
            local = self.locals.name(("layer", key), name)
            self.body.append(f"{local} = {ctor}")
            self._layer_of[key] = local
            self._settings_of[key] = settings
            return local
        return ctor

    def owner(self, node: NodeBase, cls: str, *args: str, **kwargs: str | None) -> str | None:
        """The local of the layer that already holds `node`'s weights under other settings than
        `layers.<cls>(*args, **kwargs)`, else None (then `layer` serves the node). The emitter applies
        the op's `keras.ops` function to that layer's variables, so the weights stay one set."""
        key = self._layer_key(node) if node.params else None
        if key is not None and key in self._layer_of and self._settings_of[key] != call(cls, *args, **kwargs):
            return self._layer_of[key]
        return None

    def policy_arg(self, node: NodeBase) -> str | None:
        """The `dtype=` (Keras dtype policy) of `node`'s layer: the dtype its values have (a float32
        layer would cast a float16/float64 input to float32), or `mixed_<d>` when its params are float32
        and it computes in float16/bfloat16 (a Keras mixed-precision layer, see
        frontends/keras/policies.py); None for float32. Any other pairing has no Keras policy."""
        floats = [self.graph.values[v].dtype for v in (*node.inputs, *node.outputs)]
        floats = [d for d in floats if d.startswith(("float", "bfloat"))]
        compute = floats[0] if floats else self.dtype
        params = {self.graph.params[n].dtype for n in node.params.values()}
        params = {d for d in params if d.startswith(("float", "bfloat"))}
        if not params or params == {compute}:
            return None if compute == "float32" else f'"{compute}"'
        if params == {"float32"} and compute in ("float16", "bfloat16"):
            return f'"mixed_{compute}"'
        raise CodegenError(
            f"node '{node.id}' (op {node.op.value}, from '{node.source}') computes in {compute} with {', '.join(sorted(params))} "
            "weights; a Keras dtype policy pairs float32 variables with float16/bfloat16 compute only. Cast the model "
            "to one dtype first."
        )

    def helper_layer(self, node: NodeBase, suffix: str, cls: str, *args: str, **kwargs: str | None) -> str:
        """A weightless helper layer of `node` (padding, cropping), named `<source>_<suffix>`."""
        name = self.layer_name(node, "_" + suffix if suffix else "")
        return call(f"layers.{cls}", *args, **kwargs, dtype=self.policy_arg(node), name=f'"{name}"')

    def constant(self, key: tuple, hint: str, array: np.ndarray, trainable: bool = False) -> str:
        """A tensor holding `array` (loaded from the weights file), as a `Constant` layer output."""
        if key not in self._constants:
            self.uses_constant = True
            dtype = str(array.dtype)
            if array.dtype.kind == "f" and self.dtype != "float32":
                # in the model's dtype, or an op mixing it with this float32 tensor would promote to float32;
                # bfloat16 stays stored widened (NOTE: [bfloat16 weights] in asgnas_ir.ir.weights)
                dtype = self.dtype
                array = array if dtype == "bfloat16" else array.astype(dtype)
            name = self.layer_names.name(("constant", *key), hint)
            local = self.locals.name(("constant", *key), hint)
            anchor = self.expr[self.graph.inputs[0]]
            ctor = call(
                "Constant", lit_exact(tuple(array.shape)),
                dtype=None if dtype == "float32" else f'"{dtype}"',
                trainable="True" if trainable else None, name=f'"{name}"',
            )
            self.body.append(f"{local} = {ctor}({anchor})")
            self.weights[f"{name}/value"] = np.ascontiguousarray(array)
            self._constants[key] = local
        return self._constants[key]

    def constant_source(self, value: str) -> str | None:
        """The param a value is a constant view of (a `constant` node's output), else None."""
        return self.constant_of.get(value)

    def layer_names_hint(self, param: str) -> str:
        return sanitize(self.graph.params[param].source or param)

    # ---- printing ----------------------------------------------------------------------------
    def print(self) -> str:
        inputs = []
        for name in self.graph.inputs:
            info = self.graph.values[name]
            local = self.locals.name(name, name)
            self.layer_names.name(("input", name), local)
            self.expr[name], self.perm[name] = local, identity(len(info.shape))
            dtype = None if info.dtype == "float32" else f'"{info.dtype}"'
            # a dict-input source model's key names the Input: Keras matches a dict to Inputs by name
            key = self.graph.meta.io_names.get(name, local) if self.graph.meta.frontend == "keras" else local
            # no batch_size: the batch is symbolic (DESIGN §2), so the model runs at any batch size
            inputs.append(
                f"{local} = "
                + call("keras.Input", f"shape={lit_exact(tuple(info.shape[1:]))}", dtype=dtype, name=json.dumps(key))
            )
        self.body.extend(inputs)
        for node in self.graph.nodes:
            emitter = KERAS_EMITTERS.get(node.op)
            if emitter is None:
                raise CodegenError(f"node '{node.id}' (op {node.op.value}, from '{node.source}') has no keras emitter")
            emitter(self, node)
        outputs = [self.logical(o) for o in self.graph.outputs]
        return self._module_text(outputs)

    def _module_text(self, outputs: list[str]) -> str:
        graph = self.graph
        model_name = sanitize(graph.name)
        ins = [self.expr[i] for i in graph.inputs]
        in_text = ins[0] if len(ins) == 1 else "[" + ", ".join(ins) + "]"
        if graph.meta.output_kind == "dict":
            keys = [graph.meta.io_names.get(o, o) for o in graph.outputs]
            out_text = "{" + ", ".join(f"{json.dumps(k)}: {o}" for k, o in zip(keys, outputs, strict=True)) + "}"
        elif graph.meta.output_kind == "tuple" or len(outputs) > 1:
            out_text = "[" + ", ".join(outputs) + "]"
        else:
            out_text = outputs[0]
        params = sum(p.numel for p in graph.params.values() if p.trainable)
        source = graph.meta.model_name or graph.name
        framework = graph.meta.framework or "?"
        layout = "channels-first" if self.channels_first else "channels-last"
        lines = [
            f'"""{model_name}: generated by asgnas-ir {__version__} from the {framework} model {source}.',
            "",
            f"IR fingerprint {graph.fingerprint()}; {params:,} trainable parameters. This file needs only keras 3 and",
            "safetensors; `load()` builds the model and assigns the weights of `weights.safetensors` beside it, each",
            "by its variable path (`<layer name>/<variable>`). Edit freely.",
            "",
            f"Layout: inputs and outputs are {layout}, as in the source model.",
        ]
        if self.channels_first:
            lines += [
                "Convolutions, pools and norms run channels-last (Keras' native layout): a value is transposed",
                "to channels-last once, before its first such use, and back (to the source layout) before a",
                "reshape/flatten that mixes its channel axis with others and at the outputs; every axis argument",
                "(concat, split, softmax, mean) is written for the layout the value is held in.",
            ]
        lines += [
            '"""',
            "",
            "from __future__ import annotations",
            "",
            "from pathlib import Path",
            "",
            "import keras",
            "from keras import layers",
            "from safetensors.numpy import load_file",
            "",
        ]
        if self.uses_constant:
            lines += [
                "",
                "class Constant(layers.Layer):",
                '    """A weight used as a tensor (a buffer or constant of the source model); its input is ignored."""',
                "",
                '    def __init__(self, shape: tuple[int, ...], dtype: str = "float32", trainable: bool = False, **kwargs) -> None:',
                "        super().__init__(**kwargs)",
                '        self.value = self.add_weight(shape=shape, dtype=dtype, initializer="zeros", trainable=trainable, name="value")',
                "",
                "    def call(self, x):",
                "        return keras.ops.convert_to_tensor(self.value)",
                "",
            ]
        lines += ["", "def build() -> keras.Model:", '    """The model with freshly initialised weights (see `load`)."""']
        lines += [wrapped for line in self.body for wrapped in _wrap_layer_call(line, "    ")]
        lines += [
            f'    return keras.Model({in_text}, {out_text}, name="{model_name}")',
            "",
            "",
            "def load(path: str | Path | None = None) -> keras.Model:",
            '    """The model with the weights from `path` (default: weights.safetensors beside this file)."""',
            "    model = build()",
            '    weights = load_file(str(path if path is not None else Path(__file__).with_name("weights.safetensors")))',
            "    for variable in model.weights:",
            "        variable.assign(weights[variable.path])",
            "    return model",
            "",
        ]
        return "\n".join(lines)


_LAYER_CALL = re.compile(r"^(.* = )((?:layers\.\w+|Constant)\(.*\))(\([\w\[\], ]*\))$")


def _wrap_layer_call(line: str, indent: str, width: int = 119) -> list[str]:
    """`wrap`, except that `y = layers.Conv2D(...)(x)` splits the constructor's arguments and keeps
    the call on the closing line: `)(x)`."""
    match = _LAYER_CALL.match(line)
    if len(indent) + len(line) > width and not line.endswith(")") and " = " in line:  # `y = a * b`: parenthesise
        target, expression = line.split(" = ", 1)
        return [f"{indent}{target} = (", f"{indent}    {expression}", f"{indent})"]
    if len(indent) + len(line) <= width or match is None:
        return wrap(line, indent, width)
    head, ctor, argument = match.groups()
    lines = wrap(head + ctor, indent, width - len(argument))
    return [*lines[:-1], lines[-1] + argument]


def _model_dtype(graph: Graph) -> str:
    """The one floating dtype of the graph's float inputs and params (float32 when it has none).

    Constants are held in it. Each layer's own policy comes from its node (`policy_arg`). A graph that
    mixes floating dtypes without cast nodes is refused rather than computed in one of them; one with
    cast nodes (a Keras dtype policy) follows its inputs' dtype."""
    dtypes = {graph.values[name].dtype for name in graph.inputs} | {param.dtype for param in graph.params.values()}
    floating = sorted(d for d in dtypes if d.startswith(("float", "bfloat")))
    if any(node.op is Op.CAST for node in graph.nodes):
        # a dtype policy graph: each layer gets its own (`policy_arg`); constants follow the inputs
        inputs = sorted({graph.values[name].dtype for name in graph.inputs} & set(floating))
        return inputs[0] if len(inputs) == 1 else "float32"
    if len(floating) > 1:
        raise CodegenError(
            f"graph '{graph.name}' mixes floating dtypes ({', '.join(floating)}); generated Keras layers share one "
            "dtype policy. Cast the model and its inputs to one dtype first."
        )
    return floating[0] if floating else "float32"


def float_lit(value: float) -> str:
    if value == float("inf"):
        return 'float("inf")'
    if value == float("-inf"):
        return 'float("-inf")'
    return repr(float(value))
