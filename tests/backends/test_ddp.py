"""H2SPG under torch DDP (gloo, CPU): every rank ends with the same groups and weights, and two ranks
of batch 32 equal one process of batch 64.

BatchNorm layers are kept in eval mode while training: in train mode each rank would normalise its
own 32 samples (SyncBatchNorm is CUDA-only), which is a different function from one batch of 64.
With frozen statistics the loss is a per-sample mean, so DDP's gradient average is exactly the
batch-64 gradient up to float rounding.
"""

from __future__ import annotations

import json
import socket
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
from asgnas_ir.backends.torch import distributed as tdist
from asgnas_ir.backends.torch.optim import H2SPG, HESSO
from asgnas_ir.errors import AsgnasError, DistributedStateError
from asgnas_ir.examples.supernets import SUPERNETS
from asgnas_ir.testing import load_generated

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


def _train(rank: int, world: int, out: str) -> None:
    """Train the super-ResNet for STEPS global batches on `world` ranks; write this rank's result to `out`."""
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
        for step in range(STEPS):
            start = (step * GLOBAL_BATCH) % (len(x) - GLOBAL_BATCH)  # the global batch, then this rank's share
            batch = order[start : start + GLOBAL_BATCH][rank * local : (rank + 1) * local]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(wrapped(x[batch]), y[batch]).backward()
            opt.step()
        zero_before = opt.zero_groups()
        redundant = opt.finalize()
        result = {"zero_before": zero_before, "zero": opt.zero_groups(), "redundant": redundant, "scores": opt.scores.tolist()}
        if world > 1:  # then ranks that train differently initialised models, without DDP: refused at selection
            other, other_space = _small(seed=rank)
            try:
                _fit(H2SPG(other, other_space, warmup_steps=1), other, steps=2)
            except DistributedStateError as error:
                result["mismatch"] = str(error)
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
        np.savez(Path(out, f"rank{rank}.npz"), **{k: v.numpy() for k, v in model.state_dict().items()})
    finally:
        if world > 1:
            dist.destroy_process_group()


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
    _train(0, 1, str(single))

    (r0, w0), (r1, w1), (ref, w_ref) = _load(ddp, 0), _load(ddp, 1), _load(single, 0)
    for result in (r0, r1):  # both ranks refuse, naming the rank, the scores and the remedy
        message = result.pop("mismatch")
        assert "H2SPG: at selection rank 1's redundancy scores differ from rank 0's" in message
        assert "wrap the model in torch.nn.parallel.DistributedDataParallel" in message
    assert r0 == r1  # same redundant set, same zero groups before and after finalize, same scores
    assert all(np.array_equal(w0[k], w1[k]) for k in w0)
    assert len(r0["redundant"]) == 12 and r0["zero"] == r0["redundant"]
    assert r0["zero_before"], "the half-space projection should have zeroed groups before finalize"
    assert r0["redundant"] == ref["redundant"] and r0["zero"] == ref["zero"] and r0["zero_before"] == ref["zero_before"]
    for name, value in w_ref.items():
        np.testing.assert_allclose(w0[name], value, atol=1e-5, rtol=0, err_msg=name)

    # the sub-network generated from the DDP weights computes what the single-process super-network computes
    model, _, example = _supernet()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in w0.items()})
    graph = ai.compile(model.eval(), example)
    ai.codegen(ai.subnet(graph, ai.search_space(graph, mode="erase"), r0["zero"]), target="torch", out_dir=tmp_path / "sub")
    reference, _, _ = _supernet()
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in w_ref.items()})
    x = torch.from_numpy(load_digits_split().x_test[:128])
    with torch.no_grad():
        expected, got = reference.eval()(x).numpy(), load_generated(tmp_path / "sub")(x).numpy()
    max_ref = float(np.abs(expected).max())
    assert max_ref > 1e-3 and float(np.abs(got - expected).max()) <= 1e-4 * max_ref


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
    monkeypatch.setattr(H2SPG, "_lines_min_entries", 0 if lines else 1 << 62)  # line index (large models) or matrix
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
    assert all(torch.equal(weights[k], expected[k]) for k in weights)
    restored = cls(model, space, **options)
    restored.load_state_dict(synced.state_dict())  # the collective agreement check on load
    assert restored.redundant_groups == synced.redundant_groups


def test_wrapper_paths_bind_to_the_inner_module(gloo_world_of_one: None) -> None:
    model, space = _small()
    for wrapper in (DistributedDataParallel(model), nn.DataParallel(model)):
        assert tdist.unwrap(wrapper) is model
        assert {id(t) for t in H2SPG(wrapper, space)._tensors} == {id(t) for t in H2SPG(model, space)._tensors}


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
