"""H2SPG / HESSO for torch: held to the numpy reference, the Fig. 2 validity rule, and the end-to-end guarantee."""

from __future__ import annotations

import copy
import io
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import asgnas_ir as ai
from asgnas_ir.backends import reference as ref
from asgnas_ir.backends.torch import GroupsNotZeroWarning, _flat, optim
from asgnas_ir.backends.torch.optim import H2SPG, HESSO
from asgnas_ir.errors import AsgnasError
from asgnas_ir.testing import load_generated
from tests.models import REPLICAS

X_SHAPE = (1, 3, 32, 32)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One intra-op thread: these models are tiny, and it keeps timings stable on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _ConcatNet(nn.Module):
    """Three conv-bn branches concatenated, then a conv: erase groups hold part of that conv (its input columns)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.branches = nn.ModuleList(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)) for _ in range(3))
        self.mix = nn.Conv2d(12, 6, 1)
        self.head = nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x))
        y = self.mix(torch.cat([branch(h) for branch in self.branches], 1))
        return self.head(y.mean((2, 3)))


def _resnet(mode: str, name: str = "resnet") -> tuple[nn.Module, ai.SearchSpace]:
    if name == "concat":
        torch.manual_seed(0)
        model = _ConcatNet()
    else:
        model = REPLICAS["resnet_basic"].build()
    space = ai.search_space(ai.compile(model.eval(), torch.randn(X_SHAPE)), mode=mode)
    return model.train(), space


class _Layout:
    """Independent numpy view of the groups: flat positions of each group's non-stat entries."""

    def __init__(self, model: nn.Module, space: ai.SearchSpace) -> None:
        self.params = dict(model.named_parameters())
        per_group: list[dict[str, set[int]]] = []
        for group in space.groups:
            entries: dict[str, set[int]] = {}
            for s in group.slices:
                if s.kind == "stat":
                    continue
                source = space.param_sources[s.param]
                grid = np.arange(self.params[source].numel()).reshape(tuple(self.params[source].shape))
                entries.setdefault(source, set()).update(np.take(grid, s.indices, axis=s.axis).ravel().tolist())
            per_group.append(entries)
        self.sources = sorted({src for entries in per_group for src in entries})
        self.offsets = dict(zip(self.sources, np.cumsum([0] + [self.params[s].numel() for s in self.sources]).tolist(), strict=False))
        self.groups = [
            np.array(sorted(self.offsets[src] + i for src, idx in entries.items() for i in idx), np.int64) for entries in per_group
        ]

    def flat(self, grads: bool = False) -> np.ndarray:
        tensors = [self.params[s].grad if grads else self.params[s].detach() for s in self.sources]
        return np.concatenate([t.reshape(-1).double().numpy() for t in tensors])


def _set_grads(models: list[nn.Module], generator: torch.Generator) -> None:
    for params in zip(*(m.parameters() for m in models), strict=True):
        grad = torch.randn(params[0].shape, generator=generator) * 0.1
        for p in params:
            p.grad = grad.clone()


def _use(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """"lines": the two-stage map over W-wide chunks (what every line-structured space gets); "entries": the
    fallback, one membership row per group over the entries (spaces that are not unions of lines)."""
    if path == "entries":
        monkeypatch.setattr(_flat, "CHUNK_WIDTHS", ())


def _twin_direction(twin: nn.Module, layout: _Layout, opt: torch.optim.Optimizer) -> np.ndarray:
    """torch.optim.SGD's step direction of the twin's last step (its momentum buffer), flat in `layout`'s order."""
    params = dict(twin.named_parameters())
    return np.concatenate([opt.state[params[s]]["momentum_buffer"].reshape(-1).double().numpy() for s in layout.sources])


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(batch[0]), batch[1]).backward()
    opt.step()


def _batches(n: int, seed: int = 0, size: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn((size, *X_SHAPE[1:]), generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


@pytest.mark.parametrize(
    ("name", "mode", "path"),
    [
        ("resnet", "erase", "lines"),  # whole tensors, one group each
        ("resnet", "prune", "lines"),  # rows and columns, groups sharing entries
        ("concat", "erase", "lines"),  # disjoint groups holding part of a tensor (the next conv's input columns)
        ("resnet", "erase", "entries"),
        ("resnet", "prune", "entries"),
        ("concat", "erase", "entries"),
    ],
)
@pytest.mark.parametrize("lmbda", [1e-2, None], ids=["dhspg_lambda", "auto_lambda"])
def test_scores_selection_and_half_space_step_match_reference(
    name: str, mode: str, path: str, lmbda: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warm-up scores (EMA), the selection and the sparsifying step equal the numpy reference along SGD's direction,
    kept entries equal SGD (λ by DHSPG's rule, or the automatic one from the norms at selection)."""
    _use(path, monkeypatch)
    model, space = _resnet(mode, name)
    twin = copy.deepcopy(model)
    lr, eps, omega, warmup, target, period = 0.1, 0.5, 0.5, 3, 0.5 if name == "resnet" else 2 / 3, 7
    opt = H2SPG(model, space, lr=lr, momentum=0.9, weight_decay=1e-4, target_group_sparsity=target, warmup_steps=warmup,
                ema=omega, epsilon=eps, lmbda=lmbda, shrink_period=period)
    sgd = torch.optim.SGD(twin.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    layout, twin_layout = _Layout(model, space), _Layout(twin, space)
    generator = torch.Generator().manual_seed(1)

    ema = np.zeros(len(space.groups))
    for _ in range(warmup):
        _set_grads([model, twin], generator)
        x, g = layout.flat(), layout.flat(grads=True)
        ema = omega * ema + (1 - omega) * ref.redundancy_scores([x[i] for i in layout.groups], [g[i] for i in layout.groups])
        opt.step()
        sgd.step()
        for p, q in zip(model.parameters(), twin.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    np.testing.assert_allclose(opt.scores, ema, rtol=0, atol=1e-6)
    k = math.floor(target * len(space.groups) + 1e-9)
    assert opt.redundant_groups == ref.select_redundant(ema, k, space.is_valid)
    assert len(opt.redundant_groups) == k
    assert (opt._red.r2 is not None) == (path == "lines")  # the path under test is the one taken

    red = [layout.groups[gid] for gid in sorted(opt.redundant_groups)]
    start = np.array([np.linalg.norm(layout.flat()[i]) for i in red])
    np.testing.assert_allclose(opt.start_norms, start, rtol=1e-6)
    member = np.zeros(len(layout.flat()), bool)
    for idx in red:
        member[idx] = True
    seen_projection = seen_kept = False
    for step in range(2):
        _set_grads([model, twin], generator)
        with torch.no_grad():  # first step: drive the first redundant group across the origin, it must be projected
            x_t = torch.as_tensor(layout.flat(), dtype=torch.float32)
            first = torch.as_tensor(red[0] if step == 0 else red[0][:0])
            for src in layout.sources:
                lo, n = layout.offsets[src], layout.params[src].numel()
                inside = first[(first >= lo) & (first < lo + n)] - lo
                grad = layout.params[src].grad.view(-1)
                grad[inside] = 15 * x_t[lo + inside]
                twin_layout.params[src].grad.view(-1)[inside] = grad[inside]
        x = layout.flat()
        opt.step()
        sgd.step()
        g = _twin_direction(twin, twin_layout, sgd)  # the redundant groups step along SGD's direction too
        dot = np.array([x[i] @ g[i] for i in red])
        norm = np.array([np.linalg.norm(x[i]) for i in red])
        gg = np.array([g[i] @ g[i] for i in red])
        if lmbda is None:
            lams = ref.auto_lambda(dot, norm**2, gg, start, lr, period)
        else:
            lams = ref.select_lambda(dot, norm, gg, lmbda)
        expected, projected = ref.group_half_space_step(x, g, red, lr, lams, eps, own_step=True)
        np.testing.assert_allclose(layout.flat()[member], expected[member], rtol=0, atol=1e-6)
        np.testing.assert_allclose(layout.flat()[~member], twin_layout.flat()[~member], rtol=0, atol=1e-6)
        for name, p in model.named_parameters():
            if name not in layout.offsets:
                torch.testing.assert_close(p, twin_layout.params[name], rtol=0, atol=1e-6)
        seen_projection |= bool(projected.any())
        seen_kept |= bool((~projected).any())
    assert seen_projection and seen_kept


def test_scores_skip_steps_too_old_to_matter() -> None:
    """Only the last warm-up steps are scored, and the average still equals the full one within 1e-6."""
    model, space = _resnet("prune")
    layout = _Layout(model, space)
    omega, warmup = 0.5, 25  # steps older than 20 weigh < 1e-6
    opt = H2SPG(model, space, lr=0.01, warmup_steps=warmup, ema=omega, target_group_sparsity=0.0)
    generator = torch.Generator().manual_seed(0)
    ema = np.zeros(len(space.groups))
    for _ in range(warmup):
        _set_grads([model], generator)
        x, g = layout.flat(), layout.flat(grads=True)
        ema = omega * ema + (1 - omega) * ref.redundancy_scores([x[i] for i in layout.groups], [g[i] for i in layout.groups])
        opt.step()
    np.testing.assert_allclose(opt.scores, ema, rtol=0, atol=2e-6)
    assert opt.selected and opt.redundant_groups == []


def test_reference_half_space_step_agrees_with_group_form() -> None:
    """`group_half_space_step` on disjoint groups is `half_space_step` per group, and zero stays zero."""
    rng = np.random.default_rng(0)
    x, g = rng.normal(size=12), rng.normal(size=12)
    x[8:] = 0.0
    groups = [np.arange(0, 4), np.arange(4, 8), np.arange(8, 12)]
    lams = np.array([1e-2, 0.5, 1e-2])
    new, projected = ref.group_half_space_step(x, g, groups, 0.1, lams, 0.3)
    for idx, lam in zip(groups, lams, strict=True):
        np.testing.assert_allclose(new[idx], ref.half_space_step(x[idx], g[idx], 0.1, lam, 0.3))
    assert projected[2] and not new[8:].any()
    assert ref.hesso_scale(5, 5, 10) == 1.0 and ref.hesso_scale(10, 5, 10) == 0.5 and ref.hesso_scale(15, 5, 10) == 0.0
    assert np.isfinite(ref.redundancy_scores([np.zeros(3), np.ones(3)], [np.zeros(3), np.ones(3)])).all()


def test_auto_lambda_matches_reference_and_shrinks_by_one_period_step() -> None:
    """`optim.auto_step` equals `reference.auto_lambda` (as lr·λ/‖x‖ and the half-space ratio), and its step leaves each group at most
    ‖x at selection‖/period shorter (or projects it), whatever the direction's radial and sideways parts."""
    rng = np.random.default_rng(3)
    lr, period, eps = 0.05, 10, 0.5
    xs = [rng.normal(size=6) * scale for scale in (1.0, 0.3, 0.05, 2.0, 0.0, 1.0)]
    ds = [rng.normal(size=6) * scale for scale in (0.1, 5.0, 1.0, 30.0, 1.0, 0.0)]
    ds[0] = -4.0 * xs[0]  # a direction that grows the group fast
    starts = np.array([1.5, 1.0, 0.4, 2.5, 1.0, 3.0]) * np.array([np.linalg.norm(x) or 1.0 for x in xs])
    dot = np.array([x @ d for x, d in zip(xs, ds, strict=True)])
    xx = np.array([x @ x for x in xs])
    gg = np.array([d @ d for d in ds])
    expected = ref.auto_lambda(dot, xx, gg, starts, lr, period)
    tiny = torch.finfo(torch.float64).tiny
    t = {k: torch.as_tensor(v) for k, v in {"dot": dot, "xx": xx + tiny, "dd": gg, "shrink": starts / period}.items()}
    keep_ratio, m = optim.auto_step(t["dot"], t["xx"], t["dd"], t["shrink"], lr, torch.ones(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64))
    live = xx > 0
    np.testing.assert_allclose((keep_ratio - m).numpy()[live], lr * expected[live] / np.sqrt(xx[live]), rtol=1e-9, atol=1e-12)
    inner = [x @ (x - lr * (d + lam * x / np.linalg.norm(x))) / (x @ x) for x, d, lam in zip(xs, ds, expected, strict=True) if x.any()]
    np.testing.assert_allclose(m.numpy()[live], inner, rtol=1e-9, atol=1e-12)
    assert m[4] == 0.0  # a zero group: projected (m ≤ ε), its values finite
    assert torch.isfinite(keep_ratio).all() and torch.isfinite(m).all()
    assert (expected >= 0).all() and expected[4] == 0.0
    for x, d, lam, start in zip(xs, ds, expected, starts, strict=True):
        new = ref.half_space_step(x, d, lr, lam, eps)
        if np.any(new):
            assert np.linalg.norm(new) <= np.linalg.norm(x) - start / period + 1e-12
    assert not ref.auto_lambda(dot, xx, gg, starts, 0.0, period).any()  # lr 0 moves nothing


@pytest.mark.parametrize(("mode", "path"), [("erase", "lines"), ("prune", "lines"), ("prune", "entries"), ("both", "lines")])
def test_adam_half_space_step_starts_from_adams_own_step(mode: str, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With Adam the redundant groups take x - lr·(d + λ·x/‖x‖) with d Adam's direction (torch.optim.Adam's
    step over lr), not the raw gradient; every other entry takes Adam's step exactly."""
    _use(path, monkeypatch)
    model, space = _resnet(mode)
    twin = copy.deepcopy(model)
    lr, eps, period, warmup = 1e-3, 0.5, 6, 2
    opt = H2SPG(model, space, lr=lr, base="adam", warmup_steps=warmup, epsilon=eps, shrink_period=period)
    adam = torch.optim.Adam(twin.parameters(), lr=lr)
    layout, twin_layout = _Layout(model, space), _Layout(twin, space)
    generator = torch.Generator().manual_seed(2)
    red: list[np.ndarray] = []
    member = np.zeros(0, bool)
    start = np.zeros(0)
    for step in range(warmup + period + 1):
        _set_grads([model, twin], generator)
        x, twin_before = layout.flat(), twin_layout.flat()
        opt.step()
        adam.step()
        if step < warmup:
            for p, q in zip(model.parameters(), twin.parameters(), strict=True):
                torch.testing.assert_close(p, q, rtol=0, atol=1e-7)
            if opt.selected:
                red = [layout.groups[gid] for gid in sorted(opt.redundant_groups)]
                member = np.zeros(len(x), bool)
                for idx in red:
                    member[idx] = True
                start = np.array(opt.start_norms)
            continue
        # Adam's displacement does not depend on x (no weight decay): the twin's is ours
        d = (twin_before - twin_layout.flat()) / lr
        norms = np.array([np.linalg.norm(x[i]) for i in red])
        lams = ref.auto_lambda(np.array([x[i] @ d[i] for i in red]), norms**2, np.array([d[i] @ d[i] for i in red]), start, lr, period)
        expected, _ = ref.group_half_space_step(x, d, red, lr, lams, eps, own_step=True)
        np.testing.assert_allclose(layout.flat()[member], expected[member], rtol=0, atol=2e-6)
        np.testing.assert_allclose(layout.flat()[~member], twin_layout.flat()[~member], rtol=0, atol=1e-7)
    assert all(not layout.flat()[i].any() for i in red)  # zero within the period


@pytest.mark.parametrize("lr", [1e-4, 1e-3, 1e-2])
@pytest.mark.parametrize("mode", ["erase", "prune"])
def test_adam_reaches_exact_zero_within_the_shrink_period(mode: str, lr: float) -> None:
    """Trained with Adam at any lr, every selected group is exactly zero (projected, not forced) by
    `shrink_period` steps after selection, and stays zero; the old default (λ 1e-3, ε 0) zeroed none."""
    period, warmup = 15, 5
    model, space = _resnet(mode)
    opt = H2SPG(model, space, lr=lr, base="adam", warmup_steps=warmup, shrink_period=period)
    zero_at: dict[int, int] = {}
    for n, batch in enumerate(_batches(warmup + period + 5, seed=1)):
        _train_step(model, opt, batch)
        norms = opt._redundant_norms()
        for gid, norm in zip(sorted(opt.redundant_groups), norms, strict=True):
            if norm == 0.0:
                zero_at.setdefault(gid, n + 1)
            else:
                assert gid not in zero_at, f"group {gid} left zero"
    assert opt.redundant_groups and sorted(zero_at) == sorted(opt.redundant_groups)
    assert max(zero_at.values()) <= warmup + period


def test_finalize_warns_with_each_group_and_its_norm_then_forces_zero() -> None:
    """A selected group far from zero at finalize() is named with its norm relative to selection, in a
    GroupsNotZeroWarning, then forced; made an error, the warning leaves the model untouched."""
    model, space = _resnet("erase")
    opt = H2SPG(model, space, lr=0.05, warmup_steps=5, lmbda=1e-3, epsilon=0.0)  # DHSPG's λ: far too weak here
    for batch in _batches(10):
        _train_step(model, opt, batch)
    before = copy.deepcopy(model.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error", GroupsNotZeroWarning)
        with pytest.raises(GroupsNotZeroWarning):
            opt.finalize()
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    with pytest.warns(GroupsNotZeroWarning) as caught:
        chosen = opt.finalize()
    message = str(caught[0].message)
    assert f"{len(chosen)} of the {len(chosen)} selected groups are not zero yet, 5 steps after selection" in message
    for gid in chosen[:3]:
        assert f"{gid} (" in message
    assert "% of its norm at selection" in message
    assert opt.zero_groups() == chosen
    with warnings.catch_warnings():  # now zero: nothing to say
        warnings.simplefilter("error", GroupsNotZeroWarning)
        opt.finalize()


def test_finalize_before_selection_or_before_hesso_ends_warns() -> None:
    """finalize() during warm-up selects and forces groups training never touched; HESSO halfway through
    its shrink has groups at about half their norm: both warn."""
    model, space = _resnet("prune")
    opt = H2SPG(model, space, lr=0.05, warmup_steps=50)
    for batch in _batches(3):
        _train_step(model, opt, batch)
    with pytest.warns(GroupsNotZeroWarning, match=r"before the groups were selected .*100\.0% of its norm at selection"):
        opt.finalize()
    model, space = _resnet("prune")
    hesso = HESSO(model, space, lr=0.0, warmup_steps=2, shrink_period=10)
    for batch in _batches(7):
        _train_step(model, hesso, batch)
    with pytest.warns(GroupsNotZeroWarning, match=r"HESSO\.finalize\(\).* 5 steps after selection.*50\.0% of its norm"):
        hesso.finalize()


def test_auto_lambda_needs_a_projection_threshold() -> None:
    model, space = _resnet("erase")
    with pytest.raises(AsgnasError, match="epsilon must be > 0 with the automatic λ"):
        H2SPG(model, space, epsilon=0.0)
    with pytest.raises(AsgnasError, match="shrink_period must be ≥ 0"):
        HESSO(model, space, shrink_period=-1)
    H2SPG(model, space, epsilon=0.0, lmbda=1e-3)  # DHSPG's rule keeps ε = 0 available
    HESSO(model, space, epsilon=0.0)


class _Fig2Net(nn.Module):
    """Chain with a parallel branch: stem → (A ∥ B) → add → y + C(y) → head; A and B are the only ways through."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.b = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.c = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x))
        y = self.a(h) + self.b(h)
        z = y + self.c(y)
        return self.head(z.mean((2, 3)))


def test_fig2_skips_group_that_would_disconnect_the_network() -> None:
    """The second most redundant group (B) would cut the only path once A is taken, so H2SPG takes C instead."""
    torch.manual_seed(0)
    model = _Fig2Net().eval()
    space = ai.search_space(ai.compile(model, torch.randn(1, 3, 8, 8)), mode="erase")
    assert len(space.groups) >= 3
    owner = {name: gid for gid, group in enumerate(space.groups) for s in group.slices
             for name in [space.param_sources[s.param].split(".")[0]]}
    a, b, c = owner["a"], owner["b"], owner["c"]
    with torch.no_grad():  # smaller magnitude = more redundant: A, then B, then C
        for p in model.a.parameters():
            p.mul_(1e-3)
        for p in model.b.parameters():
            p.mul_(1e-2)
    opt = H2SPG(model, space, lr=0.1, target_group_sparsity=2 / 3, warmup_steps=1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # cosine proxy 0: the scores rank by magnitude only
    opt.step()
    assert opt.scores[a] > opt.scores[b] > opt.scores[c]
    assert not space.is_valid([a, b])
    assert opt.redundant_groups == [a, c]
    assert space.is_valid(opt.redundant_groups)


@pytest.mark.parametrize(
    ("mode", "base", "path"),
    [("erase", "sgd", "lines"), ("prune", "sgd", "lines"), ("prune", "adam", "lines"), ("both", "sgd", "lines"), ("prune", "sgd", "entries")],
)
def test_training_zeroes_exactly_the_redundant_groups_and_subnet_matches(
    mode: str, base: str, path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After 60 steps the chosen groups are exactly zero by the optimizer's own projection (the default λ, within
    `shrink_period` steps of selection), finalize() has nothing to force, and the generated sub-network reproduces the model."""
    _use(path, monkeypatch)
    model, space = _resnet(mode)
    lr = 0.05 if base == "sgd" else 1e-3
    opt = H2SPG(model, space, lr=lr, weight_decay=1e-4, target_group_sparsity=0.5, warmup_steps=20, base=base, shrink_period=30)
    for batch in _batches(60):
        _train_step(model, opt, batch)
    assert len(opt.redundant_groups) == math.floor(0.5 * len(space.groups))
    assert opt._redundant_norms() == [0.0] * len(opt.redundant_groups)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GroupsNotZeroWarning)
        opt.finalize()
    assert space.is_valid(opt.redundant_groups)
    if mode != "both":
        assert opt.zero_groups() == sorted(opt.redundant_groups)
    else:  # channel groups inside a zero operator group are reported through the operator
        zero = set(opt.zero_groups())
        assert zero <= set(opt.redundant_groups)
        for gid in set(opt.redundant_groups) - zero:
            assert space.groups[gid].kind == "channel" and space.groups[gid].parent in zero

    x = torch.randn(4, *X_SHAPE[1:])
    model.eval()
    graph = ai.compile(model, x[:1])
    trained_space = ai.search_space(graph, mode=mode)
    assert len(trained_space.groups) == len(space.groups)
    ai.codegen(ai.subnet(graph, trained_space, opt.zero_groups()), target="torch", out_dir=tmp_path)
    generated = load_generated(tmp_path)
    with torch.no_grad():
        expected, actual = model(x), generated(x)
    assert (expected - actual).abs().max().item() <= 1e-4 * expected.abs().max().item()


@pytest.mark.parametrize(("mode", "path"), [("erase", "lines"), ("prune", "lines"), ("prune", "entries")])
def test_hesso_shrinks_linearly_to_exact_zero(mode: str, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """HESSO's groups follow the linear schedule (lr 0) and are exactly zero from the period's end on (lr > 0)."""
    _use(path, monkeypatch)
    period, warmup = 8, 3
    model, space = _resnet(mode)
    layout = _Layout(model, space)
    opt = HESSO(model, space, lr=0.0, warmup_steps=warmup, shrink_period=period)
    generator = torch.Generator().manual_seed(0)
    start = None
    for n in range(warmup + period):
        _set_grads([model], generator)
        opt.step()
        if n == warmup - 1:
            red = np.concatenate([layout.groups[g] for g in opt.redundant_groups])
            start = np.linalg.norm(layout.flat()[red])
        elif n >= warmup:
            scale = ref.hesso_scale(n + 1 - warmup, 0, period)
            assert np.linalg.norm(layout.flat()[red]) == pytest.approx(start * scale, rel=1e-5, abs=1e-12)
    assert opt.zero_groups() == sorted(opt.redundant_groups)

    model, space = _resnet(mode)
    opt = HESSO(model, space, lr=0.05, warmup_steps=warmup, shrink_period=period)
    for n, batch in enumerate(_batches(warmup + period + 4)):
        _train_step(model, opt, batch)
        if warmup <= n < warmup + period - 1:
            assert not set(opt.redundant_groups) & set(opt.zero_groups())
        elif n >= warmup + period - 1:
            assert opt.zero_groups() == sorted(opt.redundant_groups)


@pytest.mark.parametrize(
    ("mode", "cut", "path", "lmbda", "base"),
    [("prune", 5, "lines", 1e-2, "sgd"), ("prune", 14, "lines", 1e-2, "sgd"), ("erase", 14, "lines", 1e-2, "sgd"),
     ("prune", 14, "entries", 1e-2, "sgd"), ("prune", 14, "lines", None, "sgd"), ("erase", 14, "lines", None, "sgd"),
     ("prune", 14, "lines", None, "adam")],
)
def test_state_dict_round_trip_resumes_identically(
    mode: str, cut: int, path: str, lmbda: float | None, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpointing at step `cut` (warm-up or sparsifying phase) and resuming gives the uninterrupted run's parameters
    (with the automatic λ, the norms at selection travel in the checkpoint; with Adam, its moments and step count)."""
    _use(path, monkeypatch)
    batches = _batches(24)

    def fresh() -> tuple[nn.Module, H2SPG]:
        model, space = _resnet(mode)
        lr = 0.05 if base == "sgd" else 1e-3
        return model, H2SPG(model, space, lr=lr, weight_decay=1e-4, warmup_steps=10, epsilon=0.2, lmbda=lmbda, shrink_period=20, base=base)

    model, opt = fresh()
    for batch in batches:
        _train_step(model, opt, batch)

    first, first_opt = fresh()
    for batch in batches[:cut]:
        _train_step(first, first_opt, batch)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": first_opt.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=False)
    resumed, resumed_opt = fresh()
    resumed.load_state_dict(checkpoint["model"])
    resumed_opt.load_state_dict(checkpoint["opt"])
    for batch in batches[cut:]:
        _train_step(resumed, resumed_opt, batch)

    assert resumed_opt.redundant_groups == opt.redundant_groups
    np.testing.assert_array_equal(resumed_opt.scores, opt.scores)
    for (name, p), q in zip(model.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_missing_param_names_it() -> None:
    """Binding a search space to a model that lacks one of its params raises an AsgnasError naming param and source."""
    model, space = _resnet("erase")
    other = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(AsgnasError, match=r"source 'layer1\.0\.conv1\.weight'"):
        H2SPG(other, space)
