"""One exception tree for everything a user can get wrong.

Every error names the thing (op, node, param, file), the place (node id and its source path in the
original model) and, where there is one, the remedy. The CLI maps `AsgnasError` to exit code 2 and
prints the message as one paragraph; anything else escaping is a bug in asgnas-ir.
"""

from __future__ import annotations

from dataclasses import dataclass


class AsgnasError(Exception):
    """Base class of every user-facing asgnas-ir error."""


class IRValidationError(AsgnasError):
    """The IR is malformed: a value used before definition, a shape that disagrees with its op, ..."""

    def __init__(self, message: str, *, node: str | None = None, source: str | None = None) -> None:
        where = ""
        if node is not None:
            where = f"node '{node}'" + (f" (from '{source}')" if source else "") + ": "
        super().__init__(where + message)
        self.node = node
        self.source = source


@dataclass(frozen=True)
class UnsupportedOp:
    """One op the frontend cannot lower, with the places it occurs."""

    op: str
    locations: tuple[str, ...]


class UnsupportedOpError(AsgnasError):
    """Raised once per model, listing every op the frontend cannot lower (never just the first)."""

    def __init__(self, frontend: str, ops: list[UnsupportedOp]) -> None:
        self.frontend = frontend
        self.ops = ops
        lines = []
        for item in ops:
            shown = ", ".join(item.locations[:3]) + (" ..." if len(item.locations) > 3 else "")
            lines.append(f"  - {item.op} ({len(item.locations)}x) at {shown}")
        super().__init__(
            f"the {frontend} frontend cannot lower {len(ops)} op kind(s) of this model:\n"
            + "\n".join(lines)
            + "\nPass on_unsupported='opaque' (CLI: --on-unsupported opaque) to keep them as opaque nodes that pin "
            "every channel they touch, or add a converter (docs/adding_an_op.md)."
        )


class FrontendError(AsgnasError):
    """The model cannot be lowered for a reason other than an unknown op (tracing failed, bad inputs)."""


class ExampleInputError(FrontendError):
    """The example inputs do not fit the model (shape, dtype, type), or the model fails on them:
    the user's mistake on every lowering path, so `auto` does not try another one."""


class PassError(AsgnasError):
    """A pass failed; the message says which pass and which passes ran before it."""


class CodegenError(AsgnasError):
    """A node cannot be written as source code for the requested target."""


class SpecError(AsgnasError):
    """A model SPEC, input SHAPE or CLI argument that cannot be understood."""


class DistributedStateError(AsgnasError):
    """The ranks of a distributed job disagree on an optimizer's group state (search space, scores, selection)."""


class CheckFailed(AsgnasError):
    """An equivalence check ran but the outputs differ beyond the tolerance."""
