"""The Keras versions of the bundled super-networks: same erase-mode search spaces as torch, exact sub-networks."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.examples.supernets.keras_nets import KERAS_SUPERNETS, build_keras  # noqa: E402
from tests.examples.test_supernets import EXPECTED_COUNTS  # noqa: E402

# (image size, channels): the digits' 8x8x1 and a small RGB image.
SHAPES = [(8, 1), (16, 3)]


def _input(size: int, channels: int, batch: int = 1) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, size, size, channels)).astype(np.float32)


def _space(name: str, size: int = 8, channels: int = 1) -> ai.SearchSpace:
    keras.utils.set_random_seed(0)
    model = build_keras(name, num_classes=10, in_channels=channels, image_size=size)
    return ai.search_space(ai.compile(model, _input(size, channels)), mode="erase")


def _depths(space: ai.SearchSpace) -> list[int]:
    """The nesting depth of every group, sorted (the shape of the hierarchy, independent of names)."""
    parent = {g.id: g.parent for g in space.groups}

    def depth(gid: int) -> int:
        return 0 if parent[gid] is None else 1 + depth(parent[gid])

    return sorted(depth(g.id) for g in space.groups)


def test_same_names_as_torch() -> None:
    from asgnas_ir.examples.supernets import SUPERNETS

    assert sorted(KERAS_SUPERNETS) == sorted(SUPERNETS)
    with pytest.raises(KeyError, match="unknown Keras super-network"):
        build_keras("nope")


@pytest.mark.parametrize("size,channels", SHAPES)
@pytest.mark.parametrize("name", sorted(KERAS_SUPERNETS))
def test_search_space_count_matches_torch(name: str, size: int, channels: int) -> None:
    """Erasing mode finds as many removal structures as in the torch network (EXPECTED_COUNTS, held to its golden)."""
    assert len(_space(name, size, channels).groups) == EXPECTED_COUNTS[name]


@pytest.mark.parametrize("name", sorted(KERAS_SUPERNETS))
def test_hierarchy_matches_torch(name: str) -> None:
    """The removal structures nest as in the torch network (same depth of every structure)."""
    torch = pytest.importorskip("torch")
    from asgnas_ir.examples.supernets import SUPERNETS

    torch.manual_seed(0)
    torch_space = ai.search_space(ai.compile(SUPERNETS[name]().eval(), torch.randn(1, 1, 8, 8)), mode="erase")
    assert _depths(_space(name)) == _depths(torch_space)


def test_stacked_unets_roots_are_the_unet_outputs() -> None:
    space = _space("stacked_unets")
    roots = [g for g in space.groups if g.parent is None]
    assert len(roots) == 2 and all("_out_" in g.nodes[0] for g in roots)
    assert space.is_valid([roots[0].id]) and not space.is_valid([r.id for r in roots])


@pytest.mark.parametrize("size,channels", SHAPES)
@pytest.mark.parametrize("name", sorted(KERAS_SUPERNETS))
def test_erase_check_passes(name: str, size: int, channels: int) -> None:
    """A random valid half of the structures gives a generated Keras sub-network equal to the zeroed super-network."""
    keras.utils.set_random_seed(0)
    model = build_keras(name, num_classes=10, in_channels=channels, image_size=size)
    report = ai.check(model, _input(size, channels, batch=2), mode="erase", fraction=0.5, seed=0)
    assert report.ok, report
    assert report.flops_sub < report.flops_full


@pytest.mark.parametrize("variant", ["darts_cell_gold", "darts_cell_prunable_skip"])
def test_prunable_skip_variants_match_torch(variant: str) -> None:
    """GOLD-NAS' space on Keras: the skip-connects become removal structures nested as in torch's DartsNet
    (build_gold / build_prunable_skip), and a random valid half of them still generates an equal sub-network."""
    torch = pytest.importorskip("torch")
    from asgnas_ir.examples.supernets import darts_cell, keras_nets

    torch_build = {"darts_cell_gold": darts_cell.build_gold, "darts_cell_prunable_skip": darts_cell.build_prunable_skip}[variant]
    torch.manual_seed(0)
    torch_space = ai.search_space(ai.compile(torch_build().eval(), torch.randn(1, 1, 8, 8)), mode="erase")
    keras.utils.set_random_seed(0)
    model = getattr(keras_nets, variant)()
    space = ai.search_space(ai.compile(model, _input(8, 1)), mode="erase")
    assert len(space.groups) == len(torch_space.groups)
    assert _depths(space) == _depths(torch_space)
    skips = [g for g in space.groups if any(n.endswith("_skip") for n in g.nodes)]
    assert len(skips) == 27  # one per edge: 9 edges in each of 3 cells
    report = ai.check(model, _input(8, 1, batch=2), mode="erase", fraction=0.5, seed=0)
    assert report.ok, report


def test_darts_cell_refuses_unknown_candidates() -> None:
    from asgnas_ir.examples.supernets.keras_nets import darts_cell

    with pytest.raises(ValueError, match="candidates must be a non-empty subset"):
        darts_cell(candidates=("sep_conv5x5",))
