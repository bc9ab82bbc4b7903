"""Op definitions: one OpDef per op kind with its shape, coupling, cost and resize rules.

Importing this package registers every family; `OPDEFS` is complete afterwards.
"""

from asgnas_ir.opdefs import attention, conv, elementwise, linear_norm, resample, shape_ops  # noqa: F401  (registration)
from asgnas_ir.opdefs._opdef import OPDEFS, CoupleCtx, InferCtx, OpDef, ResizeCtx, opdef, preserves_zero

__all__ = ["OPDEFS", "CoupleCtx", "InferCtx", "OpDef", "ResizeCtx", "opdef", "preserves_zero"]
