"""cost: FLOPs (multiply-add = 2, plus bias adds) and trainable params, against hand counts and torch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import asgnas_ir as ai
from tests.models import REPLICAS, example_inputs


def cost_of(model: nn.Module, *shape: int):
    """The cost report of `model` (a bare layer is wrapped in a Sequential) on a random input of `shape`."""
    torch.manual_seed(0)
    if not isinstance(model, nn.Sequential) and not list(model.children()):
        model = nn.Sequential(model)
    return ai.cost(ai.compile(model.eval(), torch.randn(shape)))


@pytest.mark.parametrize("bias", [True, False])
def test_single_conv2d_flops_are_twice_the_macs_plus_bias_adds(bias: bool):
    """Conv2d(3, 8, 3, stride 2, pad 1) on 1x3x9x9: 2 * out_numel * Cin*kh*kw (+ out_numel with bias)."""
    report = cost_of(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=bias), 1, 3, 9, 9)
    out_numel = 1 * 8 * 5 * 5
    macs = out_numel * 3 * 3 * 3
    assert report.flops == 2 * macs + (out_numel if bias else 0)
    assert report.params == 8 * 3 * 3 * 3 + (8 if bias else 0)


def test_grouped_conv_flops_use_the_per_group_input_width():
    """A groups=4 conv's MACs use Cin/groups inputs per output element."""
    report = cost_of(nn.Conv2d(8, 12, 3, padding=1, groups=4), 2, 8, 5, 5)
    out_numel = 2 * 12 * 5 * 5
    assert report.flops == 2 * out_numel * (8 // 4) * 9 + out_numel
    assert report.params == 12 * 2 * 9 + 12


@pytest.mark.parametrize("bias", [True, False])
def test_single_linear_flops_are_twice_the_macs_plus_bias_adds(bias: bool):
    """Linear(10, 5) on a batch of 3: 2 * 3*5*10 (+ 3*5 with bias); params = weight (+ bias)."""
    report = cost_of(nn.Linear(10, 5, bias=bias), 3, 10)
    assert report.flops == 2 * 3 * 5 * 10 + (3 * 5 if bias else 0)
    assert report.params == 50 + (5 if bias else 0)


def test_conv_transpose_flops_count_each_input_times_the_kernel():
    """ConvTranspose2d MACs are in_numel * Cout*kh*kw (each input scatters a full kernel)."""
    report = cost_of(nn.ConvTranspose2d(4, 6, 3, stride=2, bias=False), 1, 4, 5, 5)
    assert report.flops == 2 * (4 * 5 * 5) * 6 * 9
    assert report.params == 4 * 6 * 9


def test_per_node_costs_add_up_and_buffers_are_not_params():
    """Total flops are the sum over nodes; batch-norm running statistics are not trainable params."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    report = cost_of(model, 1, 3, 6, 6)
    assert report.flops == sum(c.flops for c in report.per_node.values())
    assert report.params == sum(p.numel() for p in model.parameters())
    assert report.params == sum(c.params for c in report.per_node.values())
    relu = [c for c in report.per_node.values() if c.op == "relu"]
    assert len(relu) == 1 and relu[0].params == 0 and relu[0].flops == 4 * 4 * 4
    assert report.activation_bytes > 0


@pytest.mark.parametrize("name", ["resnet_basic", "mobilenet_v2", "convnext", "weight_sharing", "mlp"])
def test_params_equal_torch_parameter_count(name: str):
    """Trainable params of a compiled replica equal sum(p.numel() for p in model.parameters())."""
    replica = REPLICAS[name]
    model = replica.build()
    report = ai.cost(ai.compile(model, example_inputs(replica)))
    assert report.params == sum(p.numel() for p in model.parameters())


class SharedTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.relu(self.conv(x)))


def test_shared_weights_are_counted_once_but_their_flops_twice():
    """A conv called twice contributes its params once and its FLOPs once per call."""
    shared = cost_of(SharedTwice(), 1, 4, 5, 5)
    single = cost_of(nn.Conv2d(4, 4, 3, padding=1), 1, 4, 5, 5)
    assert shared.params == single.params == 4 * 4 * 9 + 4
    conv_calls = [c for c in shared.per_node.values() if c.op == "conv"]
    assert len(conv_calls) == 2
    assert [c.params for c in conv_calls] == [single.params, 0]
    assert sum(c.flops for c in conv_calls) == 2 * single.flops
