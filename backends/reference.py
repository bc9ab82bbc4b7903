"""The one numpy reference of the H2SPG / HESSO group math (framework-free).

Every backend's fast optimizer is tested against these functions (DESIGN §8 item 14). A group is
a flat vector `x_g` (the distinct entries of its non-statistic slices) with gradient `grad_g`.
Sources of the formulas: `shared/reference/algorithms.md` §1.2 (H2SPG) and §1.4 (DHSPG λ rule,
HESSO).

NOTE: [Scores follow the digest's DHSPG form, with one change] DHSPG's magnitude proxy is
`1/(‖x_g‖₂/|g| + 1e-6)`, which makes a large group look small (it scales like 1/sqrt(|g|)); the
operator groups of erasing mode differ in size by orders of magnitude, so the proxy here is the
inverse *mean absolute value* `1/(mean|x_g| + 1e-6)`, which does not depend on the group's size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from asgnas_ir.passes.analysis.search_space import SearchSpace

_MAGNITUDE_EPS = 1e-6


def _unit(v: np.ndarray) -> np.ndarray:
    """`v/‖v‖₂`, or zeros when `v` is the zero vector."""
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else np.zeros_like(v)


def redundancy_scores(xs: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> np.ndarray:
    """Redundancy score of each group (larger = more redundant).

    score_g = 0.5·c_g/‖c‖₂ + 0.5·m_g/‖m‖₂ with
    c_g = cos(-x_g, -grad_g) = ⟨x_g, grad_g⟩/(‖x_g‖‖grad_g‖) (0 when either vector is zero) and
    m_g = 1/(mean|x_g| + 1e-6) (mean 0 for an empty group); a proxy whose vector over all groups
    is zero contributes 0.

    Args:
        xs: the flat variables of each group.
        grads: the flat gradient of each group, same shapes as `xs`.

    Returns:
        float64 array with one score per group.
    """
    cos = np.zeros(len(xs))
    inv = np.zeros(len(xs))
    for i, (x, g) in enumerate(zip(xs, grads, strict=True)):
        x64, g64 = np.asarray(x, np.float64).ravel(), np.asarray(g, np.float64).ravel()
        denom = float(np.linalg.norm(x64) * np.linalg.norm(g64))
        cos[i] = float(x64 @ g64) / denom if denom > 0 else 0.0
        mean_abs = float(np.abs(x64).mean()) if x64.size else 0.0
        inv[i] = 1.0 / (mean_abs + _MAGNITUDE_EPS)
    return 0.5 * _unit(cos) + 0.5 * _unit(inv)


def select_redundant(
    scores: Sequence[float] | np.ndarray, k: int, is_valid: Callable[[list[int]], bool] | SearchSpace
) -> list[int]:
    """H2SPG step 2: the `k` redundant groups, most redundant first, that keep the network valid.

    Walk the groups by descending score (ties: lower id first) and accept g only if
    `is_valid(accepted + [g])`; an invalid one is skipped, not retried. Stops at `k` accepted, so
    fewer than `k` come back when not enough groups can be removed together.

    Args:
        scores: one redundancy score per group id.
        k: how many groups to accept.
        is_valid: the search space, or a callable saying whether removing exactly these group ids
            leaves a working network. A space (or its bound `is_valid`) takes the incremental path
            (`SearchSpace.greedy_valid`): the same groups in well under a second on a
            37,000-group space, where a call per candidate takes a minute.

    Returns:
        The accepted group ids in acceptance order.
    """
    from asgnas_ir.passes.analysis.search_space import SearchSpace

    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable").tolist()
    space = is_valid if isinstance(is_valid, SearchSpace) else None
    bound_to = getattr(is_valid, "__self__", None)
    if isinstance(bound_to, SearchSpace) and getattr(is_valid, "__func__", None) is SearchSpace.is_valid:
        space = bound_to  # `space.is_valid` passed as a callable: same answers, so the same fast walk
    if space is not None:
        return space.greedy_valid(order, k)
    assert callable(is_valid)
    accepted: list[int] = []
    for gid in order:
        if len(accepted) >= k:
            break
        if is_valid([*accepted, gid]):
            accepted.append(gid)
    return accepted


def select_lambda(
    dot: np.ndarray | float,
    x_norm: np.ndarray | float,
    grad_norm_sq: np.ndarray | float,
    lmbda: float,
    amplify: float = 2.0,
    hat_coeff: float = 10.0,
) -> np.ndarray:
    """DHSPG's per-group penalty λ_g (digest §1.4), vectorised over groups.

    λ_g = lmbda, except where ⟨x_g, grad_g⟩ < 0 (plain descent would grow the group):
    lo = -⟨x,g⟩/‖x‖ (smallest λ that stops ‖x‖ from growing),
    hi = -‖g‖²‖x‖/⟨x,g⟩ (largest λ that keeps -(g + λx/‖x‖) a descent direction of f),
    λ_g = clip(amplify·lo, lmbda, lmbda·hat_coeff), replaced by (lo + hi)/2 when it is ≥ hi.

    Choices (the digest gives the rule per group of rows; see also NOTE in `backends.torch.optim`):
    the statistics use the raw gradient, not the momentum direction, and a zero group gets lmbda.

    Args:
        dot: ⟨x_g, grad_g⟩ per group.
        x_norm: ‖x_g‖₂ per group.
        grad_norm_sq: ‖grad_g‖₂² per group.
        lmbda: the base penalty.
        amplify: factor on `lo` (DHSPG default for SGD: 2).
        hat_coeff: the cap is lmbda·hat_coeff (DHSPG default for SGD: 10).

    Returns:
        float64 array of λ_g.
    """
    dot, x_norm, grad_norm_sq = (np.atleast_1d(np.asarray(v, np.float64)) for v in (dot, x_norm, grad_norm_sq))
    lam = np.full(dot.shape, float(lmbda))
    grows = (dot < 0) & (x_norm > 0)
    if grows.any():
        d, n, gg = dot[grows], x_norm[grows], grad_norm_sq[grows]
        lo = -d / n
        hi = -gg * n / d
        chosen = np.clip(amplify * lo, lmbda, lmbda * hat_coeff)
        lam[grows] = np.where(chosen >= hi, 0.5 * (lo + hi), chosen)
    return lam


def auto_lambda(
    dot: np.ndarray | float,
    x_norm_sq: np.ndarray | float,
    dir_norm_sq: np.ndarray | float,
    start_norm: np.ndarray | float,
    lr: float,
    period: int,
) -> np.ndarray:
    """The automatic per-group penalty λ_g (`lmbda=None`): the smallest λ ≥ 0 whose step shrinks the group
    by at least `start_norm / period` in norm, whatever the base direction `d` does.

    With a = ‖x‖, d_r = ⟨x,d⟩/a and d_⊥ the rest of d, the step x̃ = x - lr·(d + λ·x/a) has
    ‖x̃‖² = (a - lr·(λ + d_r))² + lr²‖d_⊥‖². Asking ‖x̃‖ ≤ a - s, s = start_norm/period, gives the
    radial remainder ρ = √((a - s)² - lr²‖d_⊥‖²) and λ = (a - ρ)/lr - d_r; ρ = 0 when a ≤ s or the
    sideways step alone is too long, and then ⟨x̃, x⟩ ≤ 0 and the half-space test (ε > 0) projects
    the group. So a group is exactly zero at most `period` steps after its penalty starts.
    A zero group, or lr = 0, gets 0.

    Args:
        dot: ⟨x_g, d_g⟩ per group (d: the base optimizer's direction, its step divided by lr).
        x_norm_sq: ‖x_g‖² per group.
        dir_norm_sq: ‖d_g‖² per group.
        start_norm: ‖x_g‖ when its penalty started (selection).
        lr: the step size.
        period: steps from the start to zero (0: at once).

    Returns:
        float64 array of λ_g.
    """
    dot, xx, gg, start = (np.atleast_1d(np.asarray(v, np.float64)) for v in (dot, x_norm_sq, dir_norm_sq, start_norm))
    lam = np.zeros(dot.shape)
    live = xx > 0
    if lr <= 0 or not live.any():
        return lam
    a = np.sqrt(xx[live])
    radial = dot[live] / a
    side_sq = np.maximum(gg[live] - radial**2, 0.0)
    shrink = start[live] / period if period > 0 else np.full(a.shape, np.inf)
    rest = np.where(a > shrink, np.maximum(a - shrink, 0.0) ** 2 - lr**2 * side_sq, 0.0)
    rho = np.sqrt(np.maximum(rest, 0.0))
    lam[live] = np.maximum((a - rho) / lr - radial, 0.0)
    return lam


def half_space_step(x: np.ndarray, grad: np.ndarray, lr: float, lam: float, eps: float) -> np.ndarray:
    """One H2SPG step on a redundant group (digest §1.2, phase 3).

    x̃ = x - lr·(grad + lam·x/‖x‖), then x̃ ← 0 when ⟨x̃, x⟩ < eps·‖x‖² (half-space projection);
    a group that is already zero stays zero.

    Args:
        x: the group's flat variables.
        grad: its gradient.
        lr: step size.
        lam: the group's penalty λ_g.
        eps: the projection threshold ε ≥ 0.

    Returns:
        The new values (float64).
    """
    x64, g64 = np.asarray(x, np.float64), np.asarray(grad, np.float64)
    norm_sq = float(x64.ravel() @ x64.ravel())
    if norm_sq == 0.0:
        return np.zeros_like(x64)
    new = x64 - lr * (g64 + lam * x64 / np.sqrt(norm_sq))
    if float(new.ravel() @ x64.ravel()) < eps * norm_sq:
        return np.zeros_like(x64)
    return new


def group_half_space_step(
    x: np.ndarray, grad: np.ndarray, groups: Sequence[np.ndarray], lr: float, lams: np.ndarray, eps: float,
    own_step: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """`half_space_step` on one flat vector for redundant groups that may share entries.

    Groups share entries in prune mode: a conv's rows belong to one group, its input columns to another.
    An entry in several redundant groups takes the subgradient of f + Σ λ_g‖x_g‖:
    x̃_i = x_i - lr·(grad_i + Σ_{g∋i} λ_g·x_i/‖x_g‖) (sum over its nonzero groups); group g is
    projected when ⟨x̃_g, x_g⟩ < eps·‖x_g‖² or x_g = 0, and an entry of any projected group is 0.
    Entries outside every group are returned unchanged. With disjoint groups this is exactly
    `half_space_step` per group.

    With `own_step` the test of group g looks at its own penalised step x_g - lr·(grad_g + λ_g·x_g/‖x_g‖)
    instead of x̃_g (the torch optimizer's rule: it leaves out the other groups' pull on shared entries,
    so it is known from g's own sums; see NOTE: [Choices the digest leaves open] in `backends.torch.optim`).

    Args:
        x: flat variables.
        grad: flat gradient (or the base optimizer's direction).
        groups: indices into `x` of each redundant group (distinct within a group).
        lr: step size.
        lams: λ_g per group.
        eps: projection threshold.
        own_step: test each group on its own penalised step.

    Returns:
        (new flat values, bool array: which groups were projected to zero).
    """
    x64, g64 = np.asarray(x, np.float64).copy(), np.asarray(grad, np.float64)
    coef = np.zeros_like(x64)
    norms = np.array([np.linalg.norm(x64[idx]) for idx in groups])
    for idx, lam, norm in zip(groups, lams, norms, strict=True):
        if norm > 0:
            coef[idx] += lam / norm
    members = np.zeros(x64.shape, bool)
    for idx in groups:
        members[idx] = True
    new = x64.copy()
    new[members] = x64[members] - lr * (g64[members] + coef[members] * x64[members])
    if own_step:
        inner = [norm**2 - lr * (float(g64[idx] @ x64[idx]) + lam * norm) for idx, lam, norm in zip(groups, lams, norms, strict=True)]
    else:
        inner = [float(new[idx] @ x64[idx]) for idx in groups]
    projected = np.array([norm == 0 or v < eps * norm**2 for v, norm in zip(inner, norms, strict=True)], bool)
    for idx, zero in zip(groups, projected, strict=True):
        if zero:
            new[idx] = 0.0
    return new, projected


def hesso_scale(step: int, start: int, period: int) -> float:
    """HESSO-style linear shrink factor of the chosen groups.

    1 up to `start`, then 1 - (step-start)/period, and 0 from `start + period` on.
    A group multiplied at step n by hesso_scale(n)/hesso_scale(n-1) follows x_n ≈ x_start·hesso_scale(n)
    (the ratio form of `hesso.py`, `(D - t - 1)/(D - t)`), so it is exactly zero after `period` steps.

    Args:
        step: the current step.
        start: the last step at full scale.
        period: steps to go from 1 to 0 (≤ 0: straight to 0 after `start`).

    Returns:
        The factor in [0, 1].
    """
    t = step - start
    if t <= 0:
        return 1.0
    if t >= period:
        return 0.0
    return 1.0 - t / period


def hesso_ratio(step: int, start: int, period: int) -> float:
    """The multiplier applied at `step`: hesso_scale(step)/hesso_scale(step-1) (0 once the scale is 0)."""
    before = hesso_scale(step - 1, start, period)
    return hesso_scale(step, start, period) / before if before > 0 else 0.0
