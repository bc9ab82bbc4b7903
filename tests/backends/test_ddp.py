"""H2SPG under torch DDP (gloo, CPU): every rank ends with the same groups and weights, and two ranks
of batch 32 equal one process of batch 64.

BatchNorm layers are kept in eval mode while training: in train mode each rank would normalise its
own 32 samples (SyncBatchNorm is CUDA-only), which is a different function from one batch of 64.
With frozen statistics the loss is a per-sample mean, so DDP's gradient average is exactly the
batch-64 gradient up to float rounding.

"Up to float rounding" is what the comparisons below are built around. Summing the batch in two halves
and adding the halves (what DDP does) rounds differently from summing 64 samples at once (one process),
by an amount that depends on the CPU's kernels. During warmup H2SPG is plain SGD with momentum, a smooth
map, so that difference stays at the size of the rounding and is held to a bound measured from it. After
selection the half-space projection is discontinuous: a rounding-sized difference can move the step at
which a group is projected, and the weights of the two runs then part by an optimizer step (1e-4..1e-3
here), which no rounding bound covers. So after warmup the decisions are compared exactly, and the
weights only against a process that sums the batch in the same two halves (the same arithmetic as DDP).
"""

from __future__ import annotations

import json
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import asgnas_ir as ai
from asgnas_ir.backends.data import load_digits_split
from asgnas_ir.backends.torch import _flat
from asgnas_ir.backends.torch import distributed as tdist
from asgnas_ir.backends.torch.optim import H2SPG, HESSO, GroupsNotZeroWarning
from asgnas_ir.errors import AsgnasError, DistributedStateError
from asgnas_ir.examples.supernets import SUPERNETS
from asgnas_ir.testing import load_generated
from asgnas_ir.tolerance import outputs_match

GLOBAL_BATCH, STEPS, WARMUP = 64, 30, 5
OPTIONS = {"lr": 0.05, "momentum": 0.9, "target_group_sparsity": 0.5, "warmup_steps": WARMUP, "lmbda": 20.0, "epsilon": 0.5}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _supernet() -> tuple[nn.Module, ai.SearchSpace, torch.Tensor]:
    split = load_digits_split()
    torch.manual_seed(0)
    model = SUPERNETS["super_resnet"]()
    example = torch.from_numpy(split.x_test[:1])
    return model, ai.search_space(ai.compile(model.eval(), example), mode="erase"), example


def _freeze_norms(model: nn.Module) -> None:
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _train(rank: int, world: int, out: str, parts: int = 1, measure: bool = False) -> None:
    """Train the super-ResNet for STEPS global batches on `world` ranks; write this rank's result to `out`.

    `parts` > 1 (one process) sums each global batch as that many accumulated parts, averaged like DDP
    averages its ranks. `measure` writes, next to the weights after warmup, a bound on how far the
    warmup weights can move when the batch sum is reordered into two halves (see `_ReorderBound`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model, space, _ = _supernet()
        _freeze_norms(model)
        # rank 0 binds through the DDP wrapper (`module.` paths), the others through the bare module
        wrapped = DistributedDataParallel(model) if world > 1 else model
        opt = H2SPG(wrapped if rank == 0 else model, space, **OPTIONS)
        split = load_digits_split()
        x, y = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        local = GLOBAL_BATCH // world
        bound = _ReorderBound(model, OPTIONS["lr"], OPTIONS["momentum"]) if measure else None
        for step in range(STEPS):
            start = (step * GLOBAL_BATCH) % (len(x) - GLOBAL_BATCH)  # the global batch, then this rank's share
            batch = order[start : start + GLOBAL_BATCH][rank * local : (rank + 1) * local]
            opt.zero_grad(set_to_none=True)
            if bound is not None and step < WARMUP:
                halves = [_grads(model, x[half], y[half]) for half in batch.chunk(2)]
            for part in batch.chunk(parts):
                nn.functional.cross_entropy(wrapped(x[part]), y[part]).backward()
            for p in model.parameters():
                if parts > 1 and p.grad is not None:
                    p.grad.div_(parts)  # DDP's average of its ranks' gradients
            if bound is not None and step < WARMUP:
                bound.add_step(halves)
            opt.step()
            if bound is not None and step < WARMUP:
                bound.add_update_rounding(opt)
            if step == WARMUP - 1:
                if bound is not None:
                    np.savez(Path(out, f"rank{rank}_bound.npz"), **bound.arrays())
                np.savez(Path(out, f"rank{rank}_warm.npz"), **_weights(model))
        zero_before = opt.zero_groups()
        with warnings.catch_warnings():
            # the run is too short for every chosen group to reach zero; finalize forcing them is
            # what the test compares across ranks, so its warning is expected here
            warnings.simplefilter("ignore", GroupsNotZeroWarning)
            redundant = opt.finalize()
        result = {"zero_before": zero_before, "zero": opt.zero_groups(), "redundant": redundant, "scores": opt.scores.tolist()}
        if world > 1:  # then ranks that train differently initialised models, without DDP: refused at selection
            other, other_space = _small(seed=rank)
            try:
                _fit(H2SPG(other, other_space, warmup_steps=1), other, steps=2)
            except DistributedStateError as error:
                result["mismatch"] = str(error)
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
        np.savez(Path(out, f"rank{rank}.npz"), **_weights(model))
    finally:
        if world > 1:
            dist.destroy_process_group()
        torch.set_num_threads(threads)


def _weights(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), [p for _, p in named], allow_unused=True)
    return {k: g for (k, _), g in zip(named, grads, strict=True) if g is not None}


class _ReorderBound:
    """How far reordering the batch sum can move the weights during warmup, per parameter tensor.

    At each warmup step the gradient is computed both ways at the same weights: as one sum over the
    global batch, and as the average of the two halves' gradients (DDP's order). Their difference dg is
    the rounding the reordering causes on this machine's kernels, measured rather than guessed (it is the
    quantity a γ_n·Σ|terms| bound would estimate from above). SGD with momentum is linear in the
    gradients, so a difference dg_s at step s moves the weights by lr·Σ_{t≥s} β^(t-s)·dg_s; summed over the
    warmup steps that is `lr · Σ_t m_t` with m_t = β·m_{t-1} + dg_t. Each run also rounds its own update
    w − lr·m once per step (at most u·|w| and u·lr·|m| each, u = 2^-24 for float32, and the two runs round
    independently: twice that). The bound is first order: it leaves out the change of the gradient
    caused by the weights having already moved (curvature), which over a few steps of lr 0.05 from a
    difference of a few ulps is far below the terms kept. Compared as each tensor's largest entry,
    because the coupling through curvature moves rounding between the entries of a tensor.
    """

    U = 2.0**-24

    def __init__(self, model: nn.Module, lr: float, beta: float) -> None:
        self.params = {k: p for k, p in model.named_parameters() if p.requires_grad}
        self.lr, self.beta = lr, beta
        self.momentum = {k: 0.0 for k in self.params}
        self.bound = {k: 0.0 for k in self.params}

    def add_step(self, halves: list[dict[str, torch.Tensor]]) -> None:
        for k, p in self.params.items():
            if p.grad is None or k not in halves[0]:
                continue
            dg = float((p.grad - (halves[0][k] + halves[1][k]) / 2).abs().max())
            self.momentum[k] = self.beta * self.momentum[k] + dg
            self.bound[k] += self.lr * self.momentum[k]

    def add_update_rounding(self, opt: torch.optim.Optimizer) -> None:
        for k, p in self.params.items():
            buf = opt.state[p].get("momentum_buffer") if p in opt.state else None
            m = float(buf.abs().max()) if buf is not None else 0.0
            self.bound[k] += 2 * self.U * (float(p.detach().abs().max()) + self.lr * m)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.float64(v) for k, v in self.bound.items()}


def _load(out: Path, rank: int) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(out / f"rank{rank}.npz") as arrays:
        return json.loads((out / f"rank{rank}.json").read_text()), dict(arrays)


@pytest.mark.slow
def test_two_ranks_agree_and_match_one_process_of_the_global_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    ddp.mkdir()
    single.mkdir()
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    mp.spawn(_train, args=(2, str(ddp)), nprocs=2, join=True)
    _train(0, 1, str(single), measure=True)

    (r0, w0), (r1, w1), (ref, _) = _load(ddp, 0), _load(ddp, 1), _load(single, 0)
    for result in (r0, r1):  # both ranks refuse, naming the rank, the scores and the remedy
        message = result.pop("mismatch")
        assert "H2SPG: at selection rank 1's redundancy scores differ from rank 0's" in message
        assert "wrap the model in torch.nn.parallel.DistributedDataParallel" in message
    # Bitwise: both ranks apply the same all-reduced gradient with the same code to the same weights.
    assert r0 == r1  # same redundant set, same zero groups before and after finalize, same scores
    assert all(np.array_equal(w0[k], w1[k]) for k in w0)
    assert len(r0["redundant"]) == 12 and r0["zero"] == r0["redundant"]
    assert r0["zero_before"], "the half-space projection should have zeroed groups before finalize"
    # The decisions are the global batch's, whatever the order of the sum.
    assert r0["redundant"] == ref["redundant"] and r0["zero"] == ref["zero"] and r0["zero_before"] == ref["zero_before"]

    # Warmup (smooth SGD): the DDP weights are the one-process weights up to the measured reordering bound.
    with np.load(ddp / "rank0_warm.npz") as a, np.load(single / "rank0_warm.npz") as b, np.load(single / "rank0_bound.npz") as c:
        warm_ddp, warm_single, bound = dict(a), dict(b), {k: float(v) for k, v in c.items()}
    assert bound.keys() <= warm_single.keys() and len(bound) > 10
    for name, limit in bound.items():
        diff = float(np.abs(warm_ddp[name] - warm_single[name]).max())
        assert diff <= limit, f"{name}: DDP and one process differ by {diff:.3g} after warmup, rounding bound {limit:.3g}"

    # The whole run against one process that sums each global batch in the same two halves: DDP's
    # all-reduce of two ranks is one addition, commutative in IEEE arithmetic, and the 1/2 of the average
    # is exact, so this is the same arithmetic on the same data and must agree bit for bit.
    halves = tmp_path / "halves"
    halves.mkdir()
    _train(0, 1, str(halves), parts=2)
    same_order, w_same = _load(halves, 0)
    assert same_order == r0
    for name, value in w_same.items():
        np.testing.assert_array_equal(w0[name], value, err_msg=name)

    # the sub-network generated from the DDP weights computes what the super-network with those weights computes
    model, _, example = _supernet()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in w0.items()})
    graph = ai.compile(model.eval(), example)
    ai.codegen(ai.subnet(graph, ai.search_space(graph, mode="erase"), r0["zero"]), target="torch", out_dir=tmp_path / "sub")
    x = torch.from_numpy(load_digits_split().x_test[:128])
    with torch.no_grad():
        expected, got = model(x).numpy(), load_generated(tmp_path / "sub")(x).numpy()
    max_ref = float(np.abs(expected).max())
    assert outputs_match(float(np.abs(got - expected).max()), max_ref)


# ----- one process: the collective path with a gloo group of size 1, and the checks themselves -----


@pytest.fixture
def gloo_world_of_one(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        yield
    finally:  # "auto" syncing would otherwise reach every later optimizer in this process
        dist.destroy_process_group()


class _Branches(nn.Module):
    """Four conv-bn branches summed: four operator groups."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.branches = nn.ModuleList(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)) for _ in range(4))
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        return self.head(sum(b(h) for b in self.branches).mean((2, 3)))


def _small(seed: int = 0) -> tuple[nn.Module, ai.SearchSpace]:
    torch.manual_seed(seed)
    model = _Branches()
    return model.train(), ai.search_space(ai.compile(model.eval(), torch.randn(1, 1, 6, 6)), mode="erase")


def _fit(opt: torch.optim.Optimizer, model: nn.Module, steps: int = 12) -> dict[str, torch.Tensor]:
    _freeze_norms(model)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(8, 1, 6, 6, generator=generator), torch.randint(0, 3, (8,), generator=generator)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(("cls", "lines"), [(H2SPG, False), (HESSO, False), (H2SPG, True)])
def test_synced_optimizer_in_a_world_of_one_equals_the_unsynced_one(
    gloo_world_of_one: None, cls: type, lines: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not lines:  # the fallback map over entries, or (default) the two-stage map over chunks
        monkeypatch.setattr(_flat, "CHUNK_WIDTHS", ())
    options = {**OPTIONS, "warmup_steps": 3, "lmbda": 5.0}
    model, space = _small()
    synced = cls(DistributedDataParallel(model), space, **options)
    assert synced._sync is not None and synced._sync.size == 1
    weights = _fit(synced, model)
    plain_model, _ = _small()
    plain = cls(plain_model, space, **options, sync_group=None)
    assert plain._sync is None
    expected = _fit(plain, plain_model)
    assert synced.redundant_groups == plain.redundant_groups and len(synced.redundant_groups) == 2
    assert synced.zero_groups() == plain.zero_groups()
    # bitwise: in a world of one the all-reduces return their input and DDP divides by 1, so both runs
    # do the same arithmetic on the same data in this process; any difference is a bug in the sync path
    assert all(torch.equal(weights[k], expected[k]) for k in weights)
    restored = cls(model, space, **options)
    restored.load_state_dict(synced.state_dict())  # the collective agreement check on load
    assert restored.redundant_groups == synced.redundant_groups


def test_wrapper_paths_bind_to_the_inner_module(gloo_world_of_one: None) -> None:
    model, space = _small()
    for wrapper in (DistributedDataParallel(model), nn.DataParallel(model)):
        assert tdist.unwrap(wrapper) is model
        assert {id(t) for t in H2SPG(wrapper, space)._searched} == {id(t) for t in H2SPG(model, space)._searched}


def test_ranks_that_disagree_fail_with_the_rank_and_the_remedy() -> None:
    tdist.check_identical(np.array([[3, 7], [3, 7]]), "search space", "H2SPG", "fix it")
    with pytest.raises(DistributedStateError, match=r"H2SPG: rank 2's search space \(\[3, 8\]\) differ from rank 0's \(\[3, 7\]\); fix it"):
        tdist.check_identical(np.array([[3, 7], [3, 7], [3, 8]]), "search space", "H2SPG", "fix it")
    scores = np.array([[0.5, 0.25, 0.125], [0.5, 0.25, 0.125 + 1e-9]])
    tdist.check_close(scores, "redundancy scores", "H2SPG", tdist.SCORE_RTOL)
    scores[1, 1] = 0.3
    with pytest.raises(DistributedStateError, match=r"rank 1's redundancy scores differ .*group 1: 0\.3 vs 0\.25.*DistributedDataParallel"):
        tdist.check_close(scores, "redundancy scores", "H2SPG", tdist.SCORE_RTOL)


def test_sync_group_option_is_checked() -> None:
    model, space = _small()
    assert H2SPG(model, space)._sync is None  # "auto" without torch.distributed: a plain optimizer
    with pytest.raises(AsgnasError, match="sync_group was given but torch.distributed is not initialised"):
        H2SPG(model, space, sync_group=object())
    with pytest.raises(AsgnasError, match="sync_group must be 'auto', None or a torch.distributed ProcessGroup, got 'world'"):
        H2SPG(model, space, sync_group="world")


def test_torchrun_example_trains_and_writes_the_subnet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from asgnas_ir.examples import train_ddp

    for name, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(name, value)
    threads = torch.get_num_threads()
    try:
        train_ddp.main(["--steps", "6", "--warmup", "2", "--batch", "32", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    assert not dist.is_initialized()
    assert "1 ranks: 12 of 24 groups removed" in capsys.readouterr().out
    assert (tmp_path / "model.py").is_file() and (tmp_path / "weights.safetensors").is_file()
