"""One generated class per block structure: the source's repeated submodules (ResNet's bottlenecks,
a ViT's encoder layers) written once, as a class whose constructor takes what differs between them.

A *scope* is a source module path; the frontend records the scope of every node (`meta.scopes`, the
innermost module whose forward made it) and the class of every module (`meta.modules`). A scope is
a block when its nodes

- run one after another in the graph (so one call can stand for them in forward),
- read only params stored under it and read by nobody else (so it owns its weights),
- own at least one param (a ReLU module or a block erase mode emptied stays inline) and call at
  least one submodule (a lone layer is one line in forward anyway),
- are not a plain container (`Sequential`, `ModuleList`, `ModuleDict`: the model's forward, not
  theirs, says how their children are called) and have children named like attributes,

and its source class is used at least twice among the blocks found (a one-off module stays inline).
The outermost such scopes win. Each instance is printed on its own by a `TorchPrinter` with the
scope as prefix, its layers declared by their paths inside it; instances of one class whose texts
agree token for token except in numbers become one class, and each number that differs between
them becomes a constructor argument (`conv2_stride`), named after the argument it fills. Instances
that differ otherwise (a block with a `downsample` branch, a block erase mode cut a branch from)
are another class, named after what it has or lacks (`BottleneckWithDownsample`).
"""

from __future__ import annotations

import io
import re
import tokenize
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from asgnas_ir.errors import CodegenError
from asgnas_ir.ir.ops import Op
from asgnas_ir.naming import Namespace, sanitize
from asgnas_ir.passes.codegen._symbols import constant_pattern
from asgnas_ir.passes.codegen._torch_printer import NotABlock, TorchPrinter
from asgnas_ir.passes.codegen._torch_tree import Decl, ref

_CONTAINERS = {"Sequential", "ModuleList", "ModuleDict"}
# positional arguments of the constructors a block's numbers mostly sit in
_POSITIONAL = {
    "Linear": ("in_features", "out_features"),
    "LayerNorm": ("normalized_shape",),
    "GroupNorm": ("num_groups", "num_channels"),
    "Embedding": ("num_embeddings", "embedding_dim"),
}
_SHORT = {"in_channels": "in", "out_channels": "out", "in_features": "in", "out_features": "out", "num_features": "features"}
# a setting a block printer writes explicitly (see `TorchPrinter.explicit_settings`) and the
# class drops again where every instance has torch's default
_DEFAULTS = re.compile(r", (?:stride|dilation|groups)=1(?=[,)])|, padding=0(?=[,)])")


@dataclass
class BlockCall:
    """One instance: nodes `start:end` of the graph, replaced by a call of the block's module."""

    scope: str
    start: int
    end: int
    inputs: list[str]
    outputs: list[str]
    printer: TorchPrinter
    returns: list[str] = field(default_factory=list)  # the instance's own expressions of `outputs`
    constructor: str = ""  # `Bottleneck(256, 64, 256)`
    pack_axis: int | None = None  # the inputs go in as one list the block concatenates on this axis

    @property
    def packed(self) -> bool:
        return self.pack_axis is not None

    def call(self, parent: TorchPrinter) -> None:
        # declared here, in forward's order, so __init__ lists the modules as the source runs them
        parent.tree.declare(self.scope, Decl("module", self.constructor))
        args = ", ".join(parent.expr[v] for v in self.inputs)
        if self.packed:
            args = f"[{args}]"
        hint = sanitize(self.scope)
        names = [parent.locals.name(out, hint if len(self.outputs) == 1 else f"{hint}_{i}") for i, out in enumerate(self.outputs)]
        parent.body.append(f"{', '.join(names)} = self.{ref(self.scope)}({args})")
        for out, name in zip(self.outputs, names, strict=True):
            parent.expr[out] = name


@dataclass
class ChainCall:
    """Consecutive list-taking blocks, each fed the list so far plus its predecessor's output, that
    are all the children of one container (DenseNet's dense block): one loop over the container."""

    container: str
    blocks: list[BlockCall]

    @property
    def end(self) -> int:
        return self.blocks[-1].end

    def call(self, parent: TorchPrinter) -> None:
        for block in self.blocks:
            parent.tree.declare(block.scope, Decl("module", block.constructor))
        first = self.blocks[0]
        name = parent.locals.name(("chain", self.container), self.container.rpartition(".")[2] or "features")
        parent.body.append(f"{name} = [{', '.join(parent.expr[v] for v in first.inputs)}]")
        parent.body.append(f"for layer in self.{ref(self.container)}.children():")
        parent.body.append(f"    {name}.append(layer({name}))")
        values = [*first.inputs, *(block.outputs[0] for block in self.blocks)]
        for i, value in enumerate(values[len(first.inputs) :], start=len(first.inputs)):
            parent.expr[value] = f"{name}[{i}]"
        parent.lists[tuple(values)] = name


def _concatenates_its_inputs(nodes: list, block: BlockCall) -> bool:
    first = nodes[block.start]
    return (
        len(block.inputs) > 1 and first.op is Op.CONCAT and first.inputs == block.inputs
        and not any(v in block.inputs for node in nodes[block.start + 1 : block.end] for v in node.inputs)
    )


def _mark_packed(nodes: list, chosen: list[BlockCall]) -> None:
    """A block that starts by concatenating everything it reads (DenseNet's layer: `torch.cat(
    features, 1)`) takes one list, so layers fed by 3 and by 12 earlier outputs print the same text;
    so does a one-input block whose next sibling reads its input and its output that way (the first
    layer of a dense block)."""
    for block in chosen:
        if _concatenates_its_inputs(nodes, block):
            block.pack_axis = nodes[block.start].attrs.axis
    for block, after in zip(chosen, chosen[1:], strict=False):
        if (
            len(block.inputs) == 1 and len(block.outputs) == 1 and after.packed and after.start == block.end
            and after.inputs == [*block.inputs, *block.outputs]
            and block.scope.rpartition(".")[0] == after.scope.rpartition(".")[0]
        ):
            block.pack_axis = after.pack_axis


def _chains(calls: list[BlockCall], scopes_of_params: list[str]) -> list[ChainCall]:
    """The runs of packed blocks that `ChainCall` can loop over."""
    chains: list[ChainCall] = []
    run: list[BlockCall] = []

    def close() -> None:
        container = run[0].scope.rpartition(".")[0] if run else ""
        owned = [s for s in scopes_of_params if s.startswith(container + ".")]
        if len(run) >= 2 and container and all(any(s.startswith(b.scope + ".") for b in run) for s in owned):
            chains.append(ChainCall(container, list(run)))
        run.clear()

    for block in calls:
        previous = run[-1] if run else None
        follows = (
            previous is not None and block.packed and len(previous.outputs) == 1 and previous.end == block.start
            and block.inputs == [*previous.inputs, previous.outputs[0]]
            and block.scope.rpartition(".")[0] == previous.scope.rpartition(".")[0]
        )
        if not follows:
            close()
            if block.packed and len(block.outputs) == 1:
                run.append(block)
            continue
        run.append(block)
    close()
    return chains


def _filled_scopes(printer: TorchPrinter) -> list[str]:
    """Every node's scope; a node a later pass made (no scope) takes the deepest scope its
    neighbours share, so a permute inserted inside an encoder layer stays inside it."""
    nodes = printer.graph.nodes
    known = [printer.graph.meta.scopes.get(node.id) for node in nodes]
    filled: list[str] = []
    for i, scope in enumerate(known):
        if scope is not None:
            filled.append(scope)
            continue
        before = next((known[j] for j in range(i - 1, -1, -1) if known[j] is not None), "")
        after = next((known[j] for j in range(i + 1, len(known)) if known[j] is not None), "")
        common = []
        for a, b in zip((before or "").split("."), (after or "").split("."), strict=False):
            if a != b:
                break
            common.append(a)
        filled.append(".".join(common))
    return filled


def _candidates(printer: TorchPrinter) -> list[BlockCall]:
    graph = printer.graph
    nodes = graph.nodes
    scopes = _filled_scopes(printer)
    members: dict[str, list[int]] = defaultdict(list)
    for i, scope in enumerate(scopes):
        parts = scope.split(".") if scope else []
        for depth in range(1, len(parts) + 1):
            members[".".join(parts[:depth])].append(i)
    readers: dict[str, set[int]] = defaultdict(set)
    for i, node in enumerate(nodes):
        for param in node.params.values():
            readers[param].add(i)
    consumers: dict[str, set[int]] = defaultdict(set)
    for i, node in enumerate(nodes):
        for value in node.inputs:
            consumers[value].add(i)
    graph_outputs = set(graph.outputs)
    # a constant generated code rebuilds at the call's size (a causal mask) is stored nowhere, so it
    # needs no owner
    rebuilt = {
        p for p, where in readers.items()
        if all(nodes[i].op is Op.CONSTANT and graph.values[nodes[i].outputs[0]].dims is not None
               and constant_pattern(graph, nodes[i])[0] != "expand" for i in where)
    }
    found = []
    for scope, indices in members.items():
        kind = graph.meta.modules.get(scope)
        if kind is None or kind in _CONTAINERS or not printer.tree.valid(scope):
            continue
        start, end = indices[0], indices[-1] + 1
        if end - start != len(indices):
            continue
        inside = set(range(start, end))
        children = {s[len(scope) + 1 :].split(".")[0] for s in scopes[start:end] if s.startswith(scope + ".")}
        params = {p for i in inside for p in nodes[i].params.values()}
        children |= {graph.params[p].source[len(scope) + 1 :].split(".")[0] for p in params if graph.params[p].source.startswith(scope + ".")}
        if not params or not all(c.isidentifier() for c in children):
            continue  # a module without weights (a ReLU, a block erase mode emptied) reads best inline
        if not any(s.startswith(scope + ".") for s in scopes[start:end]):
            continue  # a layer (a Conv2d, an RMSNorm): no submodule of its own, one line in forward
        if any(not (graph.params[p].source.startswith(scope + ".") or p in rebuilt) or not readers[p] <= inside for p in params):
            continue
        produced = [out for i in range(start, end) for out in nodes[i].outputs]
        made = set(produced)
        inputs = list(dict.fromkeys(v for i in range(start, end) for v in nodes[i].inputs if v not in made))
        outputs = [v for v in produced if v in graph_outputs or not consumers[v] <= inside]
        if not inputs or not outputs:
            continue
        found.append(BlockCall(scope, start, end, inputs, outputs, printer))
    return found


def _choose(found: list[BlockCall], modules: dict[str, str]) -> list[BlockCall]:
    uses = Counter(modules[b.scope] for b in found)
    # a module whose children are repeated blocks (DenseNet's `_DenseBlock`, a stage) is a container
    # in all but name: its children are the blocks, and it stays a container
    child_kinds: dict[str, Counter] = defaultdict(Counter)
    for b in found:
        parent = b.scope.rpartition(".")[0]
        child_kinds[parent][modules[b.scope]] += 1
    chosen: list[BlockCall] = []
    for block in sorted(found, key=lambda b: (b.scope.count("."), b.start)):
        if uses[modules[block.scope]] < 2 or any(n >= 2 for n in child_kinds[block.scope].values()):
            continue
        if any(block.scope.startswith(c.scope + ".") for c in chosen):
            continue
        chosen.append(block)
    return sorted(chosen, key=lambda b: b.start)


def _print_instance(parent: TorchPrinter, block: BlockCall) -> tuple[str, list[str]] | None:
    """The instance's class body (`__init__` statements, a marker line, forward statements) and
    the names of its inputs, or None when it cannot stand alone."""
    child = TorchPrinter(parent.graph, prefix=block.scope, block_inputs=block.inputs)
    nodes = parent.graph.nodes[block.start : block.end]
    if block.packed:
        names = [child.locals.name("features", "features")]
        if len(block.inputs) > 1:
            child.assign(nodes[0], f"torch.cat(features, dim={block.pack_axis})")
            nodes = nodes[1:]
        else:  # the first of a chain: it concatenates its one-item list as its siblings do
            joined = child.locals.name(("joined", block.scope), "cat")
            child.body.append(f"{joined} = torch.cat(features, dim={block.pack_axis})")
            child.expr[block.inputs[0]] = joined
    else:
        # the first input is the block's `x`; the others keep their value's name (`cos`, `attention_mask`)
        names = [child.locals.name(v, "x" if i == 0 else re.sub(r"(_\d+)+$", "", sanitize(v)) or "x") for i, v in enumerate(block.inputs)]
        for value, name in zip(block.inputs, names, strict=True):
            child.expr[value] = name
    try:
        for node in nodes:
            child.emit(node)
        returns = [child.logical(v) for v in block.outputs]
    except (NotABlock, CodegenError):
        return None
    if child.ties:
        return None
    block.printer = child
    block.returns = returns
    text = "\n".join([*child.init_lines(), "#forward", *child.forward_lines(), "return " + ", ".join(returns)])
    return text, names


def _tokens(text: str) -> list[tokenize.TokenInfo]:
    return [t for t in tokenize.generate_tokens(io.StringIO(text + "\n").readline) if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER)]


def _shape(tokens: list[tokenize.TokenInfo]) -> tuple:
    return tuple((t.type, "#" if t.type == tokenize.NUMBER else t.string) for t in tokens)


def _argument_name(tokens: list[tokenize.TokenInfo], k: int) -> str:
    """What the number at `k` fills: `<target>_<argument>` (`conv2_stride`, `conv1_out`)."""
    line = tokens[k].start[0]
    row = [t for t in tokens if t.start[0] == line]
    target = "value"
    if len(row) > 2 and row[0].string == "self" and row[1].string == ".":
        target = row[2].string
    elif row and row[0].type == tokenize.NAME:
        target = row[0].string
    if k >= 2 and tokens[k - 1].string == "=" and tokens[k - 2].type == tokenize.NAME and tokens[k - 2].start[0] == line:
        return f"{target}_{tokens[k - 2].string}"
    depth, commas, j = 0, 0, k - 1
    while j >= 0 and tokens[j].start[0] == line:
        text = tokens[j].string
        if text in ")]}":
            depth += 1
        elif text in "([{":
            if depth == 0:
                break
            depth -= 1
        elif text == "," and depth == 0:
            commas += 1
        j -= 1
    callee = tokens[j - 1].string if j >= 1 and tokens[j].string == "(" and tokens[j - 1].type == tokenize.NAME else "size"
    if callee.startswith(("Conv", "ConvTranspose")):
        names: tuple[str, ...] = ("in_channels", "out_channels")
    elif callee.startswith(("BatchNorm", "InstanceNorm")):
        names = ("num_features",)
    else:
        names = _POSITIONAL.get(callee, ())
    argument = names[commas] if commas < len(names) else f"{callee.lower()}_{commas}"
    return f"{target}_{_SHORT.get(argument, argument)}"


def _class_text(
    name: str, text: str, inputs: list[str], varying: dict[tuple[int, int], tuple[int, str]], forward_line: int,
    kinds: dict[str, str], packed: bool,
) -> str:
    """The class source from one instance's text, its varying numbers replaced by arguments."""
    lines = text.split("\n")
    for (row, col), (end, arg) in sorted(varying.items(), reverse=True):
        line = lines[row - 1]
        used = arg if row < forward_line else f"self.{arg}"
        lines[row - 1] = line[:col] + used + line[end:]
    init = [_DEFAULTS.sub("", line) if "nn.Conv" in line else line for line in lines[: forward_line - 1]]
    forward = lines[forward_line:]
    arguments = list(dict.fromkeys(arg for _, arg in varying.values()))
    kept = [a for a in arguments if any(re.search(rf"\bself\.{a}\b", line) for line in forward)]
    signature = ", ".join(["self", *(f"{a}: {kinds[a]}" for a in arguments)])
    out = [f"class {name}(nn.Module):", f"    def __init__({signature}) -> None:", "        super().__init__()"]
    out += [f"        self.{a} = {a}" for a in kept]
    out += [f"        {line}" for line in init]
    returns = forward[-1]
    count = returns.count(",") + 1
    annotation = "torch.Tensor" if count == 1 else "tuple[" + ", ".join(["torch.Tensor"] * count) + "]"
    args = ", ".join(f"{x}: {'list[torch.Tensor]' if packed else 'torch.Tensor'}" for x in inputs)
    out += ["", f"    def forward(self, {args}) -> {annotation}:"]
    out += [f"        {line}" for line in forward]
    return "\n".join(out)


def plan_blocks(printer: TorchPrinter) -> dict[int, BlockCall]:
    """The block instances of the model, keyed by their first node; their classes are added to
    `printer.classes` and their modules to `printer.tree`."""
    graph = printer.graph
    if printer.prefix or printer.channels_last or not graph.meta.scopes:
        return {}
    chosen = _choose(_candidates(printer), graph.meta.modules)
    _mark_packed(graph.nodes, chosen)
    printed: dict[str, list[tuple[BlockCall, str, list[str]]]] = defaultdict(list)
    for block in chosen:
        result = _print_instance(printer, block)
        if result is not None:
            printed[graph.meta.modules[block.scope]].append((block, *result))
    names = Namespace({"nn", "torch", "F", "Path", "load", "load_file", sanitize(graph.name)})
    calls: dict[int, BlockCall] = {}
    for kind, instances in printed.items():
        groups: dict[tuple, list[tuple[BlockCall, str, list[str], list[tokenize.TokenInfo]]]] = defaultdict(list)
        for block, text, inputs in instances:
            tokens = _tokens(text)
            groups[(_shape(tokens), tuple(inputs), block.packed)].append((block, text, inputs, tokens))
        ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0][0].start))
        common = _children(ordered[0][0][0])
        for members in ordered:
            first_block, text, inputs, tokens = members[0]
            class_name = names.name(id(members), _variant(kind, common, _children(first_block)))
            numbers = [k for k, t in enumerate(tokens) if t.type == tokenize.NUMBER]
            by_vector: dict[tuple[str, ...], str] = {}
            argument_names = Namespace({"self", "x", *inputs})
            varying: dict[tuple[int, int], tuple[int, str]] = {}
            kinds: dict[str, str] = {}
            for k in numbers:
                vector = tuple(m[3][k].string for m in members)
                if len(set(vector)) == 1:
                    continue
                if vector not in by_vector:
                    # the block's own widths read best under their usual names
                    meaning = {_channels(graph, [m[0].outputs[0] for m in members]): "out_channels",
                               _channels(graph, [m[0].inputs[0] for m in members]): "in_channels"}.get(vector)
                    hint = meaning if meaning and meaning not in by_vector.values() else _argument_name(tokens, k)
                    by_vector[vector] = argument_names.name(vector, hint)
                    is_float = any("." in v or "e" in v.lower() for v in vector)
                    kinds[by_vector[vector]] = "float" if is_float else "int"
                varying[tokens[k].start] = (tokens[k].end[1], by_vector[vector])
            forward_line = text.split("\n").index("#forward") + 1
            printer.classes.append(_class_text(class_name, text, inputs, varying, forward_line, kinds, first_block.packed))
            order = list(dict.fromkeys(arg for _, arg in varying.values()))
            for block, _, _, block_tokens in members:
                values = {varying[tokens[k].start][1]: block_tokens[k].string for k in numbers if tokens[k].start in varying}
                block.constructor = f"{class_name}({', '.join(values[a] for a in order)})"
                printer.weights.update({f"{block.scope}.{key}": array for key, array in block.printer.weights.items()})
                printer.constants += [f"{block.scope}.{key}" for key in block.printer.constants]
                printer.uses_functional |= block.printer.uses_functional
                calls[block.start] = block
    sources = [param.source for param in graph.params.values()]
    for chain in _chains(sorted(calls.values(), key=lambda b: b.start), sources):
        for block in chain.blocks:
            del calls[block.start]
        calls[chain.blocks[0].start] = chain  # type: ignore[assignment]
    return calls


def _channels(graph: Any, values: list[str]) -> tuple[str, ...] | None:
    """Each value's channel count as printed, or None where one has no channel axis."""
    counts = []
    for value in values:
        info = graph.values[value]
        if info.channel_axis is None:
            return None
        counts.append(str(info.shape[info.channel_axis]))
    return tuple(counts)


def _children(block: BlockCall) -> set[str]:
    return {path.split(".")[0] for path in block.printer.tree.root.children}


def _variant(kind: str, common: set[str], children: set[str]) -> str:
    """A class name for one structure of source class `kind`: the most common structure keeps the
    name, another is named after the children it has or lacks beside it."""
    extra, missing = sorted(children - common), sorted(common - children)
    if not extra and not missing:
        return kind
    if len(extra) + len(missing) > 2:  # a name listing many children helps nobody: number it
        return kind

    def camel(name: str) -> str:
        return "".join(part[:1].upper() + part[1:] for part in name.split("_"))

    return kind + "".join(f"With{camel(n)}" for n in extra) + "".join(f"Without{camel(n)}" for n in missing)
