"""In-place writes in a traced module, lowered as rebinding.

NOTE: [In-place writes as rebinding] The IR is pure: every node makes a new value. A torch
in-place op (`y.add_(x)`, `y += x`, `nn.ReLU(inplace=True)`, `torch.relu_`) instead changes a
tensor that fx nodes recorded *earlier* still name: fx keeps `relu(y)` pointing at the node that
made `y`, not at the `add_`. Converting the write as its pure op and then pointing every later
reader of the written tensor at the new IR value reproduces torch's result exactly.

Which fx nodes name the written tensor is not guessed from op names: the shape run records, for
every tensor result, its storage and its view geometry (shape, strides, offset), and which input
tensors each node wrote (their version counters move). Readers of the same storage with the same
geometry (`detach`, `contiguous`, an identity, `view` to the same shape) are the same tensor and
are rebound. A reader of the same storage with another geometry (the base of a slice that was
written, a reshaped view of a written tensor) would need partial updates the IR cannot express, so
the write is refused when such a reader is used after it, naming the op and place. A write into a
forward input or into a parameter or buffer is refused too: it is a side effect on state outside
the computation, which generated code would not reproduce.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx

from asgnas_ir.errors import FrontendError

# what a tensor result is: (storage, shape, strides, storage offset)
View = tuple[int, tuple[int, ...], tuple[int, ...], int]


@dataclass
class WriteLog:
    """Storage identity of each fx node's tensor result and the inputs each node wrote, from one run."""

    views: dict[torch.fx.Node, View] = field(default_factory=dict)
    writes: dict[torch.fx.Node, list[torch.fx.Node]] = field(default_factory=dict)
    tracked: bool = True  # False: storages were not kept alive, so `views` cannot be trusted
    _alive: list[torch.Tensor] = field(default_factory=list)

    def before(self, env: dict[torch.fx.Node, Any], node: torch.fx.Node) -> dict[torch.fx.Node, int]:
        """Version counters of the tensors `node` reads, taken before it runs."""
        versions = {}
        for source in node.all_input_nodes:
            version = _version(env.get(source))
            if version is not None:
                versions[source] = version
        return versions

    def after(self, env: dict[torch.fx.Node, Any], node: torch.fx.Node, versions: dict[torch.fx.Node, int], result: Any) -> None:
        written = [source for source, version in versions.items() if _version(env.get(source)) != version]
        if written:
            self.writes[node] = written
        if isinstance(result, torch.Tensor):
            if self.tracked:
                # an address is an identity only while its storage lives: keep it until the run ends
                self._alive.append(result)
            self.views[node] = view_of(result)

    def release(self) -> None:
        self._alive.clear()


def _version(value: Any) -> int | None:
    if not isinstance(value, torch.Tensor):
        return None
    try:
        return int(value._version)
    except RuntimeError:  # inference tensors keep no version counter
        return None


def view_of(tensor: torch.Tensor) -> View:
    try:
        storage = tensor.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):  # tensor subclasses without storage: unique per tensor
        storage = -id(tensor)
    return (int(storage), tuple(tensor.shape), tuple(tensor.stride()), int(tensor.storage_offset()))


def bump(tensor: torch.Tensor) -> torch.Tensor:
    """Mark `tensor` written, for a shape shortcut that skips the in-place kernel."""
    torch.autograd.graph.increment_version(tensor)
    return tensor


_IN_PLACE_OPERATORS = {
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv, operator.ipow,
    operator.imod, operator.iand, operator.ior, operator.ixor, operator.ilshift, operator.irshift, operator.imatmul,
    operator.setitem,
}


def may_write(root: torch.nn.Module, graph: torch.fx.Graph, known: Any) -> bool:
    """Whether any node could write a tensor in place (by its name, an `inplace` flag, or because it
    is a call the frontend does not know). Only then must a real run keep every result alive."""
    for node in graph.nodes:
        if node.op == "call_method":
            name = str(node.target)
            if (name.endswith("_") and not name.startswith("__")) or name.startswith("__i"):
                return True
        elif node.op == "call_function":
            name = getattr(node.target, "__name__", "")
            if node.target in _IN_PLACE_OPERATORS or (name.endswith("_") and not name.startswith("_")):
                return True
        elif node.op == "call_module" and getattr(root.get_submodule(str(node.target)), "inplace", False):
            return True
        if node.op.startswith("call") and (node.kwargs.get("inplace") or "out" in node.kwargs or not known(node)):
            return True
    return False


def rebind_after_write(b: Any, node: torch.fx.Node, log: WriteLog, order: dict[torch.fx.Node, int], where: str, op: str) -> None:
    """Point every later reader of the tensor `node` wrote at `node`'s lowered value (see the NOTE)."""
    written = log.writes.get(node)
    if not written:
        return
    how = "write it out of place (e.g. `y = y + x` instead of `y.add_(x)`, `inplace=False`)"
    if not log.tracked:
        raise FrontendError(f"{where}: {op} writes a tensor in place where the frontend could not track aliases; {how}")
    result = log.views.get(node)
    if node.op == "call_function" and node.target is operator.setitem and len(written) == 1:
        # `x[box] = v` returns nothing: its lowered value is the whole of `x` after the write
        result = log.views.get(written[0])
        log.views[node] = result  # type: ignore[assignment]
    for target in written:
        if target.op == "placeholder":
            raise FrontendError(
                f"{where}: {op} writes into the forward input '{target.name}'; the caller's tensor would change, which "
                f"generated code does not reproduce. {how[0].upper()}{how[1:]}"
            )
        if result is None or log.views.get(target) != result or not b.is_tensor(b.env.get(node)):
            raise FrontendError(
                f"{where}: {op} writes into '{target.name}' in place but does not return that tensor; "
                f"the frontend cannot follow the write. {how[0].upper()}{how[1:]}"
            )
    at = order[node]
    new_value = b.env[node]
    for other, view in log.views.items():
        if view[0] != result[0] or other is node:  # type: ignore[index]
            continue
        if other.op in ("placeholder", "get_attr"):
            kind = "forward input" if other.op == "placeholder" else "parameter or buffer"
            raise FrontendError(
                f"{where}: {op} writes in place into (a view of) the {kind} '{other.target}'; that is a side effect "
                f"generated code does not reproduce. {how[0].upper()}{how[1:]}"
            )
        if order.get(other, at) >= at or not _read_after(other, at, order):
            continue
        if view == result:
            b.env[other] = new_value
            continue
        raise FrontendError(
            f"{where}: {op} writes in place into a view that shares memory with the tensor of fx node '{other.name}' "
            f"(another shape, stride or offset), which is read afterwards; the IR cannot express a partial update. {how[0].upper()}{how[1:]}"
        )


_SHAPE_QUERIES = {"size", "dim", "numel"}


def _read_after(node: torch.fx.Node, at: int, order: dict[torch.fx.Node, int]) -> bool:
    """Whether a node later than position `at` reads `node`'s values (not only its shape)."""
    for user in node.users:
        if order[user] <= at:
            continue
        if user.op == "call_method" and user.target in _SHAPE_QUERIES:
            continue
        if user.op == "call_function" and user.target is getattr:
            continue
        return True
    return False
