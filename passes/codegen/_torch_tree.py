"""The module tree of a generated torch class: where each layer, parameter and buffer lives
(`layer3.4.conv2`, the source's own state_dict path) and the `__init__` lines that build it.

A path's parents become containers of the kind the source used where that keeps the keys: a
`Sequential` / `ModuleList` whose children are `0..n-1` stays one (`self.layer3[4].conv2`); one
with gaps (erase mode removed block 2) becomes an `nn.ModuleDict` keyed by the same strings, so the
survivors keep their keys (`self.layer3["3"]`); any other module is a plain `nn.Module()` holding its
children as attributes. Layers whose params have no common owner path keep a flat attribute at the
top of the class (their `path` is one segment), as before.

Forward lines name a layer by a marker, `ref(path)`, because the container kinds are known only once
every layer is declared; `resolve` turns the markers into access expressions.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

_MARK = re.compile("\x01([^\x02]*)\x02")
_KEY = re.compile(r"[A-Za-z0-9_\-]+")
_LIST_TYPES = {"Sequential", "ModuleList"}


def _attribute(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def ref(path: str) -> str:
    """The marker forward code uses for the module, parameter or buffer at `path` (see `resolve`)."""
    return f"\x01{path}\x02"


@dataclass
class Decl:
    """One thing `__init__` creates: a module from `text` (a constructor call), or a parameter or
    buffer of shape text `text` (`1, 197, 768, dtype=torch.float16`)."""

    kind: str  # "module", "param", "buffer" or "constant" (a buffer kept out of the state_dict)
    text: str


@dataclass
class _Node:
    decl: Decl | None = None
    children: dict[str, _Node] = field(default_factory=dict)


def _plain_attribute(name: str, child: _Node) -> bool:
    """A parameter, buffer or constant registered by name on a ModuleDict's owner stays an attribute
    (`self.x`); modules inside the dict are reached by key."""
    return _attribute(name) and child.decl is not None and child.decl.kind != "module"


class ModuleTree:
    """The declarations of one generated class, by path relative to the class."""

    def __init__(self, types: dict[str, str] | None = None, reserved: set[str] | None = None) -> None:
        self.root = _Node()
        self.types = types or {}  # path -> the source's class name for that module
        self.reserved = reserved or set()

    def fits(self, path: str) -> bool:
        """Whether `path` can live in the tree: every segment an identifier or an index, none of
        them an `nn.Module` attribute (`training`, `forward`), and no other declaration on it."""
        if not self.valid(path):
            return False
        parts = path.split(".")
        node = self.root
        for part in parts:
            node = node.children.get(part)  # type: ignore[assignment]
            if node is None:
                return True
            if node.decl is not None and node.decl.kind != "module":
                return False  # a parameter cannot hold children
        return node.decl is None and not node.children

    def valid(self, path: str) -> bool:
        """Whether generated code can reach `path` by attribute and index (`block1-0` cannot)."""
        parts = path.split(".")
        if not _attribute(parts[0]):  # the class itself is no container: a Sequential model's layers stay flat
            return False
        # other names (`block1-0`) live in an nn.ModuleDict, reached as `["block1-0"]`
        if not all(_KEY.fullmatch(part) for part in parts):
            return False
        return not any(part in self.reserved for part in parts)

    def declare(self, path: str, decl: Decl) -> None:
        node = self.root
        for part in path.split("."):
            node = node.children.setdefault(part, _Node())
        node.decl = decl

    # ---- access ------------------------------------------------------------------------------
    def _kind(self, path: str, node: _Node) -> str:
        """How a container holds its children: "list" (indexed 0..n-1), "dict" or "attrs"."""
        names = list(node.children)
        if names and all(name.isdigit() for name in names):
            contiguous = sorted(int(n) for n in names) == list(range(len(names)))
            if contiguous and node.decl is None:
                return "list"
            return "dict"
        if node.decl is None and not all(_attribute(name) for name in names):
            return "dict"
        return "attrs"

    def access(self, path: str) -> str:
        """`path` as Python after `self`: `.layer3[4].conv2`, `.layer3["3"].conv2`."""
        node, text, walked = self.root, "", []
        for part in path.split("."):
            kind = self._kind(".".join(walked), node)
            if kind == "list":
                text += f"[{part}]"
            elif kind == "dict" and not _plain_attribute(part, node.children[part]):
                text += f'["{part}"]'
            else:
                text += f".{part}"
            walked.append(part)
            node = node.children[part]
        return text

    def resolve(self, line: str) -> str:
        """`line` with each marker replaced by its access expression (it follows a `self.`)."""
        return _MARK.sub(lambda m: self.access(m.group(1))[1:], line)

    # ---- __init__ ----------------------------------------------------------------------------
    def init_lines(self) -> list[str]:
        lines: list[str] = []
        for name, child in self.root.children.items():
            self._emit(lines, "self", "attrs", name, child, name)
        return lines

    def _expression(self, path: str, node: _Node) -> str | None:
        """`node` as one expression when it is a module whose subtree is all modules in lists."""
        if node.decl is not None:
            return node.decl.text if node.decl.kind == "module" and not node.children else None
        if self._kind(path, node) != "list":
            return None
        parts = []
        for name in sorted(node.children, key=int):
            inner = self._expression(f"{path}.{name}", node.children[name])
            if inner is None:
                return None
            parts.append(inner)
        if self.types.get(path) == "ModuleList":
            return "nn.ModuleList([" + ", ".join(parts) + "])"
        return "nn.Sequential(" + ", ".join(parts) + ")"

    def _emit(self, lines: list[str], parent: str, parent_kind: str, name: str, node: _Node, path: str) -> None:
        target = f"{parent}.{name}" if parent_kind == "attrs" else f'{parent}["{name}"]'
        if parent_kind == "list":
            target = f"{parent}[{name}]"
        decl = node.decl
        if decl is not None and decl.kind == "param":
            lines.append(f"{parent}.{name} = nn.Parameter(torch.empty({decl.text}))" if parent_kind == "attrs"
                         else f'{parent}.register_parameter("{name}", nn.Parameter(torch.empty({decl.text})))')
            return
        if decl is not None and decl.kind in ("buffer", "constant"):
            persistent = ", persistent=False" if decl.kind == "constant" else ""
            lines.append(f'{parent}.register_buffer("{name}", torch.empty({decl.text}){persistent})')
            return
        expression = self._expression(path, node)
        if parent_kind == "list":
            lines.append(f"{parent}.append({expression if expression is not None else self._empty(path, node)})")
        elif parent_kind == "dict":
            lines.append(f'{parent}["{name}"] = {expression if expression is not None else self._empty(path, node)}')
        else:
            lines.append(f"{target} = {expression if expression is not None else self._empty(path, node)}")
        if expression is not None:
            return
        kind = self._kind(path, node)
        names = sorted(node.children, key=int) if kind == "list" else list(node.children)
        for child_name in names:
            self._emit(lines, target, kind, child_name, node.children[child_name], f"{path}.{child_name}")

    def _empty(self, path: str, node: _Node) -> str:
        """The constructor of a container whose children are added one by one after it."""
        if node.decl is not None:
            return node.decl.text
        kind = self._kind(path, node)
        if kind == "list":
            return "nn.ModuleList()" if self.types.get(path) == "ModuleList" else "nn.Sequential()"
        return "nn.ModuleDict()" if kind == "dict" else "nn.Module()"
