"""`check` on every model replica: compile → random zero groups → subnet → codegen → equal outputs."""

from __future__ import annotations

import subprocess
import sys

import pytest

import asgnas_ir as ai
from tests.models import REPLICAS, example_inputs


@pytest.mark.parametrize("name", sorted(REPLICAS))
def test_check_passes_in_prune_mode(name: str) -> None:
    """The generated sub-network matches the zeroed super-network within the DESIGN tolerance."""
    replica = REPLICAS[name]
    report = ai.check(replica.build(), example_inputs(replica), mode="prune", fraction=0.5, seed=0)
    assert report.ok, report
    assert report.max_ref > 1e-3
    assert report.max_abs_diff <= 1e-4 * report.max_ref
    assert report.zeroed > 0 and report.params_sub < report.params_full and report.flops_sub < report.flops_full


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("name", ["resnet_bottleneck", "densenet", "regnet", "chunk_split", "weight_sharing"])
def test_check_passes_for_other_random_selections(name: str, seed: int) -> None:
    """Equivalence holds for other random group selections and fractions, not one lucky draw."""
    replica = REPLICAS[name]
    # up to 3/5 of the groups: at 0.9, four of these five networks came out dead (every output the same
    # for any input), which check reports as a degenerate selection since it would prove nothing
    report = ai.check(replica.build(), example_inputs(replica, seed), fraction=0.2 * seed, seed=seed)
    assert report.ok, report


def test_check_report_has_the_contract_keys() -> None:
    """The report carries exactly the keys DESIGN §4 lists for `check --json`."""
    replica = REPLICAS["mlp"]
    report = ai.check(replica.build(), example_inputs(replica))
    keys = set(report.model_dump())
    assert keys == {
        "ok", "max_abs_diff", "tolerance", "params_full", "params_sub", "flops_full", "flops_sub", "groups",
        "zeroed", "frontend", "target", "seconds", "max_ref", "shapes_checked",
    }
    assert set(report.seconds.model_dump()) == {"compile", "space", "subnet", "codegen", "total"}
    assert report.frontend == "fx" and report.target == "torch"


def test_check_leaves_the_users_model_untouched() -> None:
    """check works on a copy: the caller's weights are neither re-randomized nor zeroed."""
    import torch

    replica = REPLICAS["resnet_basic"]
    model = replica.build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ai.check(model, example_inputs(replica))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_generated_file_needs_only_torch_and_safetensors(tmp_path) -> None:
    """model.py imports and runs with asgnas_ir blocked from importing."""
    replica = REPLICAS["efficientnet"]
    ai.check(replica.build(), example_inputs(replica), out_dir=tmp_path)
    source = (tmp_path / "model.py").read_text()
    assert "asgnas_ir" not in source and "pickle" not in source
    script = (
        "import sys, importlib.util, torch\n"
        "sys.modules['asgnas_ir'] = None\n"
        f"spec = importlib.util.spec_from_file_location('m', r'{tmp_path / 'model.py'}')\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "model = m.load()\n"
        "print(tuple(model(torch.randn(3, 3, 32, 32)).shape))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(3, 10)"  # batch size 3 works, not just the example's 1
