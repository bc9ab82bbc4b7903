"""Generated torch code nests like the source model (issue 19): every surviving parameter and buffer
under the source's state_dict key, a sliced source checkpoint loads with strict=True, repeated blocks
are one class whose constructor takes the widths, and the text is `ruff check` / `ruff format`
clean. Replicas here; timm's ResNet-50 and ViT in the slow tests."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends.torch.binding import rerandomize_, zero_slices_  # noqa: E402
from asgnas_ir.spec import import_file  # noqa: E402
from asgnas_ir.testing import assert_outputs_match  # noqa: E402
from tests.models import REPLICAS, example_inputs  # noqa: E402


def _generate(model: Any, example: tuple, folder: Path, mode: str = "prune", fraction: float = 0.4, seed: int = 0):
    """The model with a random valid selection zeroed in place, its subnet graph and generated module."""
    live = copy.deepcopy(model).eval()
    rerandomize_(live, seed, example)
    graph = ai.compile(live, example)
    space = ai.search_space(graph, mode=mode)
    zero = ai.random_zero_groups(graph, space, fraction, seed=seed)
    zero_slices_(live, graph, [s for gid in zero for s in space.group(gid).slices])
    graph.update_weights(live)
    sub = ai.subnet(graph, space, zero)
    ai.codegen(sub, "torch", folder)
    return live, sub, import_file(folder / "model.py", f"hierarchy_{folder.name}")


def _sliced_checkpoint(live: Any, sub: Any) -> dict[str, Any]:
    """The source's state_dict cut to the subnet: each surviving tensor under the source's key (a tied
    weight under each of its keys). Tensors the source computes in forward are in no state_dict."""
    source = live.state_dict()
    checkpoint = {p.source: torch.from_numpy(sub.weights[n].copy()) for n, p in sub.params.items() if p.source in source}
    for key, tensor in source.items():
        twin = next((k for k in checkpoint if source[k].data_ptr() == tensor.data_ptr() and k != key), None)
        if key not in checkpoint and twin is not None:
            checkpoint[key] = checkpoint[twin]
    return checkpoint


def _assert_keys_and_outputs(live: Any, sub: Any, module: ModuleType, example: tuple, batch_sizes: tuple[int, ...]) -> None:
    generated = module.load()
    keys = set(generated.state_dict())
    assert keys <= set(live.state_dict()), f"keys the source does not have: {sorted(keys - set(live.state_dict()))[:5]}"
    # a fresh instance takes the sliced source checkpoint; constants the source computes in forward
    # (fx's `_tensor_constant0`) come from the generated weights file, as `load()` does it
    fresh = type(generated)()
    fresh.load_state_dict(_sliced_checkpoint(live, sub), strict=True)
    for name, buffer in generated.named_buffers():
        if name not in keys:
            fresh.get_buffer(name).copy_(buffer)
    fresh.eval()
    for batch in batch_sizes:
        x = tuple(t.expand(batch, *t.shape[1:]).clone() if t.dtype.is_floating_point else t.repeat(batch, *[1] * (t.dim() - 1)) for t in example)
        x = tuple(t + 0.1 * torch.randn_like(t) if t.dtype.is_floating_point else t for t in x)
        with torch.no_grad():
            assert_outputs_match(fresh(*x), live(*x))


@pytest.mark.parametrize("name", ["resnet_basic", "resnet_bottleneck", "densenet", "vit_encoder", "llama_decoder", "efficientnet"])
def test_replica_subnet_keeps_the_source_state_dict_keys(name: str, tmp_path: Path) -> None:
    replica = REPLICAS[name]
    example = example_inputs(replica)
    live, sub, module = _generate(replica.build(), example, tmp_path)
    _assert_keys_and_outputs(live, sub, module, example, (1, 3))
    assert set(module.load().state_dict()) == set(_sliced_checkpoint(live, sub))


def test_repeated_blocks_are_one_class_taking_their_widths(tmp_path: Path) -> None:
    """ResNet's blocks: one class per structure (plain, with a downsample branch); the instances in
    `nn.Sequential` stages pass their pruned widths; forward keeps the residual add visible."""
    replica = REPLICAS["resnet_bottleneck"]
    _, _, module = _generate(replica.build(), example_inputs(replica), tmp_path)
    text = (tmp_path / "model.py").read_text()
    classes = re.findall(r"^class (\w+)\(nn\.Module\):", text, flags=re.M)
    assert classes[-1] == "ResNetBottleneck"
    assert "Bottleneck" in classes and any(c.startswith("Bottleneck") and "Downsample" in c for c in classes)
    assert len(classes) == 3, classes
    assert re.search(r"self\.layer1 = nn\.Sequential\(", text)
    bodies = {c: text.split(f"class {c}(nn.Module):")[1].split("\nclass ")[0] for c in classes[:-1]}
    for body in bodies.values():
        assert re.search(r"def __init__\(\s*self,\s*\w+: int", body), "the widths are constructor arguments"
    assert any(re.search(r"= \w+ \+ x\n", body) for body in bodies.values()), "the residual add reads the block's input"
    model = module.load()
    assert isinstance(model.layer1, torch.nn.Sequential)
    assert type(model.layer1[0]).__name__.startswith("Bottleneck")


def test_erased_blocks_keep_their_keys_in_a_module_dict(tmp_path: Path) -> None:
    """Erase mode removes whole blocks: a stage with a gap keeps the survivors' keys (`layer2.1` stays
    `layer2.1`), held by an nn.ModuleDict keyed by the same strings."""
    replica = REPLICAS["resnet_basic"]
    example = example_inputs(replica)
    for seed in range(8):
        folder = tmp_path / f"seed{seed}"
        live, sub, module = _generate(replica.build(), example, folder, mode="erase", fraction=0.5, seed=seed)
        _assert_keys_and_outputs(live, sub, module, example, (2,))
        keys = set(module.load().state_dict())
        if any(k.startswith("layer1.1.") for k in keys) and not any(k.startswith("layer1.0.") for k in keys):
            assert 'self.layer1["1"]' in (folder / "model.py").read_text()
            return
    pytest.fail("no seed erased layer1.0 while keeping layer1.1; widen the seeds")


def _ruff(*args: str) -> subprocess.CompletedProcess:
    from ruff.__main__ import find_ruff_bin

    return subprocess.run([str(find_ruff_bin()), *args], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("name", ["resnet_bottleneck", "vit_encoder", "llama_decoder", "densenet"])
def test_generated_source_is_ruff_clean(name: str, tmp_path: Path) -> None:
    replica = REPLICAS[name]
    _generate(replica.build(), example_inputs(replica), tmp_path)
    checked = _ruff("check", "--isolated", str(tmp_path / "model.py"))
    assert checked.returncode == 0, checked.stdout
    formatted = _ruff("format", "--isolated", "--check", str(tmp_path / "model.py"))
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet50", "vit_tiny_patch16_224", "efficientnet_b0"])
def test_timm_model_loads_its_sliced_checkpoint_strictly(arch: str, tmp_path: Path) -> None:
    """A real zoo model: the generated class loads `{key: sliced source tensor}` with strict=True and
    matches the zeroed source at two batch sizes."""
    timm = pytest.importorskip("timm")
    model = timm.create_model(arch, pretrained=False, num_classes=10)
    size = 224 if "vit" in arch else 64
    example = (torch.randn(1, 3, size, size),)
    live, sub, module = _generate(model, example, tmp_path, fraction=0.3)
    _assert_keys_and_outputs(live, sub, module, example, (1, 2))
    assert set(module.load().state_dict()) <= set(model.state_dict())


class _Block(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(width, width, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)) + x)


class _DashedNames(torch.nn.Module):
    """torchvision's RegNet names its blocks `block1-0`: no attribute can hold them."""

    def __init__(self) -> None:
        super().__init__()
        from collections import OrderedDict

        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.stage = torch.nn.Sequential(OrderedDict((f"block1-{i}", _Block(8)) for i in range(3)))
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage(self.stem(x)).mean((2, 3)))


def test_module_names_that_are_no_identifiers_live_in_a_module_dict(tmp_path: Path) -> None:
    example = (torch.randn(1, 3, 8, 8),)
    live, sub, module = _generate(_DashedNames(), example, tmp_path)
    _assert_keys_and_outputs(live, sub, module, example, (1, 3))
    text = (tmp_path / "model.py").read_text()
    assert 'self.stage["block1-2"]' in text
    assert re.search(r"^class _?Block\(nn\.Module\)", text, flags=re.M), "the three blocks are one class"
