"""H2SPG / HESSO steps dispatch a constant number of ATen ops (kernel launches on a GPU), whatever the depth,
width or number of groups, and hold little memory beyond SGD's (issue 16, NOTE: [A step in a constant number
of kernels] in `backends/torch/_flat.py`). The count is a property of the code, the same on any machine."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import asgnas_ir as ai
from asgnas_ir.backends.torch.optim import H2SPG, HESSO
from tests.models.resnet import BasicBlock, Bottleneck, ResNet

# SGD's own foreach step dispatches 5 (with the profiler's enter/exit records, counted the same way here).
BOUND = 30


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def _ops_per_step(model: nn.Module, make: Any, steps: int, size: int = 32) -> list[int]:
    """The ATen ops each `step()` dispatches, over `steps` steps of a tiny batch. A step that reads a value
    back to the host (`.item()`, `.tolist()`: a device sync on a GPU) fails, except the one that selects."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, size, size, generator=generator)
    y = torch.randint(0, 10, (2,), generator=generator)
    opt = make(model)
    counts = []
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        with _Count() as count:
            selected_before = getattr(opt, "selected", True)
            opt.step()
        if selected_before == getattr(opt, "selected", True):
            assert not [op for op in count.ops if "_local_scalar_dense" in op], "a host sync inside step()"
        counts.append(len(count.ops))
    return counts


def _space(model: nn.Module, mode: str, size: int = 32) -> ai.SearchSpace:
    return ai.search_space(ai.compile(copy.deepcopy(model).eval(), torch.randn(1, 3, size, size)), mode=mode)


def _phases(model: nn.Module, mode: str, cls: Any) -> dict[str, int]:
    """Ops of one step per phase: warm-up unscored and scored (`score_every=2` alternates them), after selection.
    Step 0 creates the momentum buffer, step 5 selects, steps 6-7 build the kept per-group buffers and stage views."""
    space = _space(model, mode)
    counts = _ops_per_step(
        copy.deepcopy(model), lambda m: cls(m, space, lr=0.01, warmup_steps=6, ema=0.5, shrink_period=20, score_every=2), 11,
    )
    assert counts[8:] == [counts[8]] * 3  # a steady state (the first steps after selection build kept buffers)
    return {"warm-up": counts[2], "scored": counts[3], "after selection": counts[8]}


@pytest.mark.parametrize("mode", ["prune", "erase"])
def test_steps_dispatch_a_bounded_number_of_ops_that_does_not_grow_with_depth(mode: str) -> None:
    """Narrow ResNet-18 / ResNet-50 / ResNet-101 layouts: every phase of H2SPG and HESSO stays within the bound, and
    the deeper and wider networks (3 to 14 times the tensors) dispatch exactly as many ops as the shallow one."""
    torch.manual_seed(0)
    models = {
        "resnet18": ResNet(BasicBlock, (2, 2, 2, 2), base=8),
        "resnet50": ResNet(Bottleneck, (3, 4, 6, 3), base=8),
        "resnet101": ResNet(Bottleneck, (3, 4, 23, 3), base=4),
    }
    for cls in (H2SPG, HESSO):
        phases = {name: _phases(model, mode, cls) for name, model in models.items()}
        for name, found in phases.items():
            assert max(found.values()) <= BOUND, (cls.__name__, name, found)
        assert phases["resnet18"] == phases["resnet50"] == phases["resnet101"], (cls.__name__, phases)
    sgd = _ops_per_step(copy.deepcopy(models["resnet50"]), lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, foreach=True), 3)
    assert sgd[-1] == 5  # the yardstick the bound is quoted against


def test_fallback_map_and_adam_stay_constant_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-entry fallback map and the Adam base also dispatch the same count at two depths (Adam's own
    moment updates make it a few ops more than SGD's)."""
    from asgnas_ir.backends.torch import _flat

    torch.manual_seed(0)
    shallow, deep = ResNet(BasicBlock, (1, 1, 1, 1), base=4), ResNet(BasicBlock, (2, 3, 4, 2), base=4)
    adam = [_phases(m, "prune", lambda model, space, **kw: H2SPG(model, space, base="adam", **kw)) for m in (shallow, deep)]
    assert adam[0] == adam[1] and max(adam[0].values()) <= BOUND + 8
    monkeypatch.setattr(_flat, "CHUNK_WIDTHS", ())
    entries = [_phases(m, "prune", H2SPG) for m in (shallow, deep)]
    assert entries[0] == entries[1] and max(entries[0].values()) <= BOUND


@pytest.mark.slow
@pytest.mark.parametrize(("name", "block", "layers"), [("resnet18", BasicBlock, (2, 2, 2, 2)), ("resnet50", Bottleneck, (3, 4, 6, 3))])
def test_full_width_resnets_within_the_bound_and_half_the_parameter_bytes(name: str, block: type, layers: tuple[int, ...]) -> None:
    """ResNet-18 and ResNet-50 at full width (11.2M and 23.5M parameters): ≤ 30 ops per step after selection, and
    the optimizer's own memory (group index, per-group vectors, kept stages) under half the parameters' bytes."""
    torch.manual_seed(0)
    model = ResNet(block, layers)
    space = _space(model, "prune")
    opt = H2SPG(model, space, lr=0.01, warmup_steps=4, ema=0.5, shrink_period=20)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    counts = []
    for _ in range(7):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        with _Count() as count:
            opt.step()
        counts.append(len(count.ops))
    assert counts[1] <= BOUND and counts[2] <= BOUND and counts[6] <= BOUND, counts  # scored warm-up, after selection
    memory = opt.memory_bytes()
    assert memory["index"] + memory["per_group"] < 0.5 * memory["params"], memory
