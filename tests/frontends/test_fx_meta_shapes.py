"""The meta run's shape rules (NOTE: [Meta shortcuts] in the fx driver) record exactly what a real
run records, and cases outside a rule still reach torch (its error, the user's hooks)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import asgnas_ir as ai
from asgnas_ir.frontends.torch_fx.builder import TensorMeta
from asgnas_ir.frontends.torch_fx.driver import _observe_on_meta, _Recorder, _trace


def _facts(recorder: _Recorder) -> dict[str, object]:
    """fx node name -> (shape, dtype) of each tensor result, Python values as they are; plus, for
    the in-place rebinding, which inputs each node wrote and which earlier node's tensor each
    result aliases with the same view (storage addresses differ between runs, the pattern must not)."""

    def fact(v: object) -> object:
        if isinstance(v, TensorMeta):
            return (v.shape, v.dtype)
        if isinstance(v, (list, tuple)):
            return type(v)(fact(x) for x in v)
        return v

    facts: dict[str, object] = {node.name: fact(v) for node, v in recorder.observed.items()}
    first: dict[int, str] = {}
    for node, view in recorder.writes.views.items():
        owner = first.setdefault(view[0], node.name)
        facts[f"{node.name}:alias"] = (owner, view[1:])
    for node, written in recorder.writes.writes.items():
        facts[f"{node.name}:writes"] = [w.name for w in written]
    return facts


def meta_and_real(model: nn.Module, *inputs: torch.Tensor) -> tuple[dict, dict]:
    model.eval()
    graph, _ = _trace(model, len(inputs))
    meta = _observe_on_meta(model, graph, list(inputs))
    assert meta is not None, "the meta run failed"
    real = _Recorder(model, graph)
    with torch.no_grad():
        real.run(*inputs)
    return _facts(meta), _facts(real)


class Layers(nn.Module):
    """Every shortcut rule, with the argument forms that change its arithmetic."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv2d(3, 6, 3, stride=2, padding=1),
            nn.Conv2d(6, 6, (3, 2), stride=(1, 2), padding=(2, 0), dilation=(2, 1), groups=3),
            nn.Conv2d(6, 4, 4, padding="same", dilation=2, bias=False),
            nn.Conv2d(4, 4, 3, padding="valid"),
            nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
        ])
        self.conv1d = nn.Conv1d(4, 5, 3, stride=3, padding=2)
        self.conv3d = nn.Conv3d(1, 2, (1, 3, 3), padding=(0, 1, 1))
        self.pools = nn.ModuleList([nn.AdaptiveAvgPool2d((None, 2)), nn.AdaptiveAvgPool2d(3), nn.AdaptiveAvgPool1d(2)])
        self.norm = nn.LayerNorm([5])
        self.linear = nn.Linear(5, 7)
        self.gate = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.ones(7))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        for conv in self.convs:
            x = conv(x)
        pooled = self.pools[0](x)
        wide = self.gate(x.mean((2, 3)))[:, :, None, None] * self.pools[1](x)  # broadcasting mul, small side first
        sequence = self.conv1d(x.flatten(2))
        tokens = self.linear(self.norm(sequence.transpose(1, 2)))  # linear and layer norm on a rank-3 input
        normed = F.layer_norm(tokens, (7,), weight=self.scale, eps=1e-3)
        cube = self.conv3d(x[:, :1, None])
        joined = torch.cat([pooled, pooled + x[:, :, :1, :2]], dim=-2)
        return wide, self.pools[2](sequence), normed, cube, joined, torch.cat((tokens, tokens), 1)


def test_shortcut_shapes_equal_a_real_run():
    meta, real = meta_and_real(Layers(), torch.randn(2, 3, 21, 19))
    assert meta == real


def test_a_conv_the_rule_does_not_fit_still_fails_with_torchs_message():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(5, 4, 1))  # 4 channels into a 5-channel conv
    with pytest.raises(ai.AsgnasError, match="expected input.*to have 5 channels"):
        ai.compile(model.eval(), torch.randn(1, 3, 8, 8))


def test_a_hooked_layer_is_called_on_meta():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LayerNorm(6), nn.Linear(6, 2)).eval()
    seen: list[str] = []
    for layer in model:
        layer.register_forward_hook(lambda m, args, out: seen.append(f"{type(m).__name__}:{out.device.type}"))
    ai.compile(model, torch.randn(1, 3, 8, 8))
    # once at the example's batch, once at batch 2 (symbolic dims)
    assert seen == ["Conv2d:meta", "LayerNorm:meta", "Linear:meta"] * 2


class Writes(nn.Module):
    """In-place ops the shortcuts answer, and layers that return their input itself."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.keep, self.drop = nn.Identity(), nn.Dropout(0.2)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv(x))
        z = self.drop(self.keep(y))
        z += self.bn(y)
        z.relu_()
        w = z.detach().view(z.size(0), -1)
        w.mul_(2.0)
        return torch.relu(w)


def test_shortcut_writes_and_aliases_equal_a_real_run():
    meta, real = meta_and_real(Writes(), torch.randn(2, 3, 6, 6))
    assert meta == real
    assert meta["act:writes"] == ["conv"] and meta["relu_:writes"] == ["iadd"]
    assert meta["drop:alias"][0] == meta["act:alias"][0] == "conv"  # identity and eval dropout return their input
