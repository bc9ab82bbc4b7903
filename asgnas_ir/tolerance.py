"""The DESIGN §4 equivalence rule, in one place: `check`, the training jobs and tests all use it.

Random or degenerate networks can output logits of 1e-12 or exactly 0, which would make any absolute
tolerance vacuous; so outputs only count as equal when the reference is not degenerate
(max |reference| > MIN_REF) and the difference is small relative to it (≤ RTOL · max |reference|).

RTOL is about 840 float32 ulps: room for summation-order differences, far below any real error. A
model that computes in float16 or bfloat16 rounds every op's result to 11 or 8 significant bits, so
two correct implementations (another kernel, another reduction order) already differ by an ulp or
two of the output; for those dtypes the bound is ULPS units in the last place instead, the looser of
the two. float64 keeps RTOL: the rule is about the model, not a promise of float64 accuracy.
"""

from __future__ import annotations

from collections.abc import Iterable

RTOL = 1e-4
MIN_REF = 1e-3
ULPS = 8

# machine epsilon (one ulp at 1.0) of the floating dtypes the IR names
EPSILON = {"float64": 2.0**-52, "float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}


def rtol(dtype: str = "float32") -> float:
    """The relative bound for outputs computed in `dtype`: RTOL, or ULPS ulps where that is looser."""
    return max(RTOL, ULPS * EPSILON.get(dtype, 0.0))


def loosest(dtypes: Iterable[str]) -> str:
    """The least precise floating dtype among `dtypes` (float32 when there is none): the one whose
    rounding a comparison of several outputs must allow for."""
    floating = [d for d in dtypes if d in EPSILON]
    return max(floating, key=EPSILON.__getitem__, default="float32")


def tolerance(max_ref: float, dtype: str = "float32") -> float:
    return rtol(dtype) * max_ref


def outputs_match(max_abs_diff: float, max_ref: float, dtype: str = "float32") -> bool:
    return bool(max_ref > MIN_REF and max_abs_diff <= tolerance(max_ref, dtype))
