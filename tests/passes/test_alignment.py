"""Aligned widths (issue 18, part 1): selections whose every layer keeps a multiple of `align`
channels or its full width, from `random_zero_groups`, `SearchSpace.aligned` and H2SPG/HESSO, and
`subnet` refusing a misaligned selection by the layer's name."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends.torch import H2SPG, HESSO  # noqa: E402
from asgnas_ir.errors import SpecError  # noqa: E402
from asgnas_ir.passes.analysis.alignment import Family, align_selection, misaligned  # noqa: E402
from tests.models import REPLICAS, example_inputs  # noqa: E402


def _compiled(name: str, mode: str = "prune") -> tuple[torch.nn.Module, ai.Graph, ai.SearchSpace]:
    replica = REPLICAS[name]
    torch.manual_seed(0)
    model = replica.build()
    graph = ai.compile(model, example_inputs(replica))
    return model, graph, ai.search_space(graph, mode)


def _kept_widths(space: ai.SearchSpace, zero: list[int]) -> list[tuple[int, int, int]]:
    """(kept groups, all groups, channels per group) of every family."""
    chosen = set(zero)
    return [(sum(g not in chosen for g in f.groups), len(f.groups), f.width) for f in space.families()]


@pytest.mark.parametrize(("removed", "expected"), [(31, 32), (29, 32), (28, 24), (3, 0), (60, 56), (0, 0), (8, 8)])
def test_each_layer_moves_to_the_nearest_aligned_count(removed: int, expected: int) -> None:
    """64 one-channel groups at align 8: r removed becomes the nearest multiple of 8 (ties: fewer)."""
    family = Family(tuple(range(64)), 1, "conv.weight")
    redundancy = np.linspace(1.0, 0.0, 64)  # group 0 the most removable
    chosen = list(range(removed))
    aligned = align_selection([family], chosen, 8, redundancy)
    assert len(aligned) == expected
    assert set(aligned) == set(range(expected))  # the most redundant stay chosen / are added first
    assert not misaligned([family], aligned, 8)


def test_a_wide_group_aligns_at_any_count_and_a_narrow_layer_only_whole() -> None:
    heads = Family((0, 1, 2, 3), 64, "q_proj.weight")  # 64 channels per head: any head count is aligned
    narrow = Family((4, 5, 6), 1, "conv.weight")  # 3 channels never reach a multiple of 8 but whole
    assert heads.allowed_removals(8) == [0, 1, 2, 3] and narrow.allowed_removals(8) == [0]
    assert sorted(align_selection([heads, narrow], [0, 4, 5], 8, np.zeros(7))) == [0]
    assert Family((0, 1, 2, 3, 4, 5), 4, "x").allowed_removals(8) == [0, 2, 4]  # 4-wide groups: pairs


@pytest.mark.parametrize("name", ["resnet_bottleneck", "mobilenet_v2", "convnext", "vit_encoder", "llama_decoder"])
@pytest.mark.parametrize("align", [4, 8])
def test_random_selection_is_aligned_valid_and_near_the_fraction(name: str, align: int) -> None:
    _, graph, space = _compiled(name)
    zero = ai.random_zero_groups(graph, space, 0.5, seed=3, align=align)
    assert space.is_valid(zero)
    for kept, total, width in _kept_widths(space, zero):
        assert kept == total or (kept * width) % align == 0, (kept, total, width)
    space.check_aligned(zero, align)
    sub = ai.subnet(graph, space, zero, align=align)
    assert ai.cost(sub).flops < ai.cost(graph).flops
    # each layer moved by less than one unit: the total stays close to what was asked
    unaligned = ai.random_zero_groups(graph, space, 0.5, seed=3)
    slack = sum(f.unit(align) for f in space.families())
    assert abs(len(zero) - len(unaligned)) <= slack


def test_subnet_names_the_misaligned_layer() -> None:
    _, graph, space = _compiled("resnet_bottleneck")
    zero = ai.random_zero_groups(graph, space, 0.5, seed=0)
    found = misaligned(space.families(), zero, 8)
    assert found, "the seed gives an aligned selection by chance; pick another"
    with pytest.raises(SpecError) as info:
        ai.subnet(graph, space, zero, align=8)
    message = str(info.value)
    assert "not aligned to 8" in message and found[0][0].label.split("[")[0] in message
    assert "space.aligned" in message
    ai.subnet(graph, space, zero)  # align 1 (the default) takes it


def test_align_must_be_a_positive_integer() -> None:
    _, graph, space = _compiled("mlp")
    for bad in (0, -8, 2.5, True):
        with pytest.raises(SpecError, match="align must be a positive integer"):
            ai.random_zero_groups(graph, space, 0.5, align=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("optimizer", [H2SPG, HESSO])
def test_optimizers_choose_aligned_groups_by_their_scores(optimizer: type) -> None:
    model, graph, space = _compiled("resnet_bottleneck")
    x = example_inputs(REPLICAS["resnet_bottleneck"])[0].repeat(4, 1, 1, 1)
    opts = {}
    for align in (1, 8):
        torch.manual_seed(0)
        copy = REPLICAS["resnet_bottleneck"].build()
        copy.load_state_dict(model.state_dict())
        opt = optimizer(copy, space, lr=0.01, target_group_sparsity=0.5, warmup_steps=3, align=align)
        for _ in range(4):
            opt.zero_grad()
            copy(x).square().mean().backward()
            opt.step()
        assert opt.selected
        opts[align] = opt
    aligned, plain = opts[8].redundant_groups, opts[1].redundant_groups
    assert space.is_valid(aligned) and not misaligned(space.families(), aligned, 8)
    assert misaligned(space.families(), plain, 8), "unaligned selection is aligned by chance; the test proves nothing"
    # the same scores decide: an aligned layer keeps its most redundant groups chosen
    scores = opts[8].scores
    for family in space.families():
        mine = [g for g in family.groups if g in set(aligned)]
        rest = [g for g in family.groups if g not in set(aligned)]
        if mine and rest:
            assert min(scores[mine]) >= max(scores[rest]) - 1e-12


def test_cli_subnet_rounds_a_random_choice_and_refuses_a_misaligned_one(tmp_path) -> None:  # noqa: ANN001
    from asgnas_ir.cli import main

    _, graph, space = _compiled("resnet_bottleneck")
    ir, out = tmp_path / "r.json", tmp_path / "sub.json"
    graph.save(ir)
    assert main(["subnet", str(ir), "--zero-random", "0.5", "--align", "8", "-o", str(out)]) == 0
    sub = ai.load(out)
    full = {p.source: p.shape[0] for p in graph.params.values() if len(p.shape) == 4}
    convs = [p for p in sub.params.values() if len(p.shape) == 4]
    assert convs and all(p.shape[0] % 8 == 0 or p.shape[0] == full[p.source] for p in convs)
    assert any(p.shape[0] < full[p.source] for p in convs)
    misaligned_ids = ai.random_zero_groups(graph, space, 0.5, seed=0)
    code = main(["subnet", str(ir), "--zero", ",".join(map(str, misaligned_ids)), "--align", "8", "-o", str(out)])
    assert code != 0
