"""The DESIGN §4 equivalence rule, in one place: `check`, the training jobs and tests all use it.

Random or degenerate networks can output logits of 1e-12 or exactly 0, which would make any absolute
tolerance vacuous; so outputs only count as equal when the reference is not degenerate
(max |reference| > MIN_REF) and the difference is small relative to it (≤ RTOL · max |reference|).
"""

from __future__ import annotations

RTOL = 1e-4
MIN_REF = 1e-3


def tolerance(max_ref: float) -> float:
    return RTOL * max_ref


def outputs_match(max_abs_diff: float, max_ref: float) -> bool:
    return bool(max_ref > MIN_REF and max_abs_diff <= tolerance(max_ref))
