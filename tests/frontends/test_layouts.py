"""Which axis of a rank-3 input carries channels: NCL for Conv1d nets, the last one for token sequences."""

from __future__ import annotations

import torch
from torch import nn

import asgnas_ir as ai


class SequenceMLP(nn.Module):
    """A pre-norm MLP block over [batch, tokens, features], as in a transformer."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(16)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(x))))
        return self.head(h.mean(1))


def test_token_sequences_put_channels_last_and_mlp_units_are_prunable() -> None:
    """Features of a [B, T, F] input read by LayerNorm/Linear are the channels; the MLP's 32 hidden units are groups."""
    graph = ai.compile(SequenceMLP().eval(), torch.randn(2, 5, 16))
    assert graph.values["x"].channel_axis == 2
    space = ai.search_space(graph)
    assert len(space.groups) == 32
    assert {s.param for s in space.groups[0].slices} == {"fc1.weight", "fc1.bias", "fc2.weight"}
    assert ai.check(SequenceMLP(), torch.randn(2, 5, 16)).ok


def test_conv1d_inputs_keep_channels_on_axis_1() -> None:
    """An NCL input read by Conv1d keeps axis 1 as its channel axis."""
    model = nn.Sequential(nn.Conv1d(4, 8, 3), nn.BatchNorm1d(8), nn.ReLU(), nn.Conv1d(8, 2, 1))
    graph = ai.compile(model.eval(), torch.randn(1, 4, 10))
    assert graph.values[graph.inputs[0]].channel_axis == 1
    assert len(ai.search_space(graph).groups) == 8
