"""The fx frontend's shortcuts: shapes from a meta-device run, weights read when first needed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import asgnas_ir as ai
from asgnas_ir.ir.weights import WeightStore


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()


def _devices_seen(model: nn.Module) -> list[str]:
    seen: list[str] = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].device.type))
    return seen


def test_compile_runs_the_model_on_meta_tensors_only() -> None:
    model = _net()
    seen = _devices_seen(model)
    ai.compile(model, torch.randn(1, 3, 8, 8))
    # two convs per lowering; compile lowers once more at batch 2 to find the symbolic dims
    assert seen == ["meta", "meta"] * 2
    assert all(p.device.type == "cpu" for p in model.parameters())  # the model's own tensors are back


def scale_by_max(x: torch.Tensor) -> torch.Tensor:
    return x / float(x.abs().max().item())  # a Python number from the data: meta tensors have none


torch.fx.wrap("scale_by_max")


class _NeedsData(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return scale_by_max(self.conv(x))


def test_a_forward_that_needs_real_data_is_run_for_real() -> None:
    model = _NeedsData().eval()
    seen = _devices_seen(model)
    graph = ai.compile(model, torch.randn(2, 3, 8, 8), on_unsupported="opaque")
    assert seen[-1] == "cpu"
    assert graph.values[graph.outputs[0]].shape == (2, 4, 8, 8)


def test_wrong_input_shape_still_names_the_model_and_shapes() -> None:
    with pytest.raises(ai.AsgnasError, match=r"of Sequential\.forward\) does not fit .* float32 \[1, 5, 8, 8\]"):
        ai.compile(_net(), torch.randn(1, 5, 8, 8))


def test_weights_are_the_compile_time_values_read_on_first_use() -> None:
    model = _net()
    graph = ai.compile(model, torch.randn(1, 3, 8, 8))
    assert isinstance(graph.weights, WeightStore) and graph.weights.pending == len(graph.params)
    ai.search_space(graph)  # analysis reads no weight
    assert graph.weights.pending == len(graph.params)
    name = next(n for n, p in graph.params.items() if p.source == "0.weight")
    first = graph.weights[name].copy()
    np.testing.assert_array_equal(first, model[0].weight.detach().numpy())
    with torch.no_grad():
        model[0].weight.add_(1.0)
    np.testing.assert_array_equal(graph.weights[name], first)  # read before the change: kept


def test_a_weight_changed_before_it_was_read_is_refused_with_the_fix() -> None:
    model = _net()
    graph = ai.compile(model, torch.randn(1, 3, 8, 8))
    with torch.no_grad():
        model[3].weight.mul_(2.0)
    name = next(n for n, p in graph.params.items() if p.source == "3.weight")
    with pytest.raises(ai.IRValidationError, match=r"param '3\.weight' changed in the model after ai\.compile.*graph\.update_weights\(model\)"):
        graph.weights[name]
    graph.update_weights(model)
    np.testing.assert_array_equal(graph.weights[name], model[3].weight.detach().numpy())


def test_graph_saved_after_compile_round_trips_weights(tmp_path) -> None:
    model = _net()
    graph = ai.compile(model, torch.randn(1, 3, 8, 8))
    graph.save(tmp_path / "g.json")
    loaded = ai.load(tmp_path / "g.json")
    for name, param in graph.params.items():
        np.testing.assert_array_equal(loaded.weights[name], dict(model.state_dict())[param.source].numpy())
