"""The ag and random searchers: loop logic on a synthetic objective (fast), then the real thing on
digits through the CLI, resumption after a kill, and the process and Ray pools (slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import asgnas_ir as ai
from asgnas_ir.backends.search import ArchitectureSpace, Evaluation, EvaluationPool
from asgnas_ir.backends.search.ag import AGConfig, ag_search
from asgnas_ir.backends.search.job import SearchJob
from asgnas_ir.backends.search.random_search import RandomSearchConfig, random_search
from asgnas_ir.backends.search.ranking import (
    best_index,
    best_so_far,
    objective_ranks,
    query_plan,
    rank_weights,
)
from asgnas_ir.cli import main
from asgnas_ir.examples.supernets import SUPERNETS

# ---- the framework-free loop logic ------------------------------------------------------------------------


def test_rank_weights_are_one_over_c_n_plus_rank() -> None:
    rank = np.array([2, 0, 3, 1])
    assert np.allclose(rank_weights(rank, c=0.01), [1 / (0.04 + 2), 1 / 0.04, 1 / (0.04 + 3), 1 / (0.04 + 1)])
    assert rank_weights(rank).argmax() == 1  # the best architecture weighs most


def test_latency_limit_ranks_by_summed_ranks_with_a_penalty() -> None:
    accuracy = [99.0, 98.0, 97.0, 90.0]
    latency = [9.0, 2.0, 1.0, 0.5]
    assert list(objective_ranks(accuracy)) == [0, 1, 2, 3]
    # Sums of ranks: 0+3, 1+2, 2+1, 3+0 all tie at 3 -> accuracy decides; over the 5 ms limit: last.
    assert list(objective_ranks(accuracy, latency, limit=5.0)) == [3, 0, 1, 2]
    with pytest.raises(ValueError, match="latency"):
        objective_ranks(accuracy, None, limit=5.0)


def test_query_plan_is_initial_then_k_per_round_cut_at_budget() -> None:
    assert query_plan(48, 16, 16) == [16, 16, 16]
    assert query_plan(50, 16, 16) == [16, 16, 16, 2]
    assert query_plan(10, 16, 4) == [10]
    for r, total in enumerate(np.cumsum(query_plan(200, 16, 8))[:-1]):
        assert total == 16 + 8 * r


def test_best_so_far_follows_validation_and_respects_the_latency_limit() -> None:
    R = SimpleNamespace
    records = [R(val_accuracy=90, test_accuracy=91, flops=5, latency_ms=1.0),
               R(val_accuracy=95, test_accuracy=89, flops=5, latency_ms=9.0),
               R(val_accuracy=93, test_accuracy=94, flops=4, latency_ms=2.0),
               R(val_accuracy=93, test_accuracy=92, flops=3, latency_ms=2.0)]
    assert best_index(records) == 1
    assert best_index(records, limit=5.0) == 3  # tie on accuracy: fewer FLOPs
    curve = best_so_far(records, limit=5.0)
    assert [p["index"] for p in curve] == [0, 0, 2, 3]
    assert [p["test_accuracy"] for p in curve] == [91, 91, 94, 92]  # test accuracy need not rise
    assert best_index(records, limit=0.1) is None


@pytest.fixture(scope="module")
def resnet_space() -> ArchitectureSpace:
    torch.manual_seed(0)
    graph = ai.compile(SUPERNETS["super_resnet"](num_classes=10, in_channels=1).eval(), torch.randn(1, 1, 8, 8))
    return ArchitectureSpace(graph, ai.search_space(graph, mode="erase"))


class SyntheticEvaluator:
    """A known objective over the 24 groups of super_resnet: the first four groups of each block
    help or hurt by fixed amounts; latency grows with the groups kept. Picklable and instant."""

    def __init__(self, group_ids: list[int]) -> None:
        self.group_ids = group_ids
        self.gain = np.random.default_rng(42).normal(0, 1, len(group_ids))

    def __call__(self, zero_groups: list[int]) -> Evaluation:
        keep = np.array([g not in zero_groups for g in self.group_ids])
        score = 80 + float(self.gain[keep].sum())
        return Evaluation(key="", zero_groups=zero_groups, val_accuracy=score, test_accuracy=score - 0.5,
                          flops=int(keep.sum()), params=int(keep.sum()), latency_ms=0.5 * float(keep.sum()))


def _job(space: ArchitectureSpace, config: AGConfig | RandomSearchConfig) -> SearchJob:
    pool = EvaluationPool(SyntheticEvaluator(space.group_ids), backend="inline")
    return SearchJob("test", config, Path("unused"), space, pool, evaluator=None)


def _ag(space: ArchitectureSpace, seed: int, budget: int = 64, **overrides: object) -> SearchJob:
    config = AGConfig.model_validate({"budget": budget, "seed": seed, "ag": {"k": 8, "ticks": 10, "min_steps": 100},
                                      **overrides})
    job = _job(space, config)
    ag_search(job, config)
    return job


def test_ag_queries_each_architecture_once_in_rounds_and_is_seeded(resnet_space: ArchitectureSpace) -> None:
    job = _ag(resnet_space, seed=0, budget=36)
    keys = [r.key for r in job.records]
    assert len(keys) == 36 and len(set(keys)) == 36  # 16 + 8 + 8 + 4
    assert job.pool.evaluations == 36 and job.pool.reused == 0
    assert all(resnet_space.is_valid(resnet_space.from_zero_groups(r.zero_groups)) for r in job.records)
    assert keys == [r.key for r in _ag(resnet_space, seed=0, budget=36).records]
    assert keys[16:] != [r.key for r in _ag(resnet_space, seed=1, budget=36).records][16:]
    curve = [p["val_accuracy"] for p in best_so_far(job.records)]
    assert curve == sorted(curve)


def test_ag_learns_where_to_look_better_than_random(resnet_space: ArchitectureSpace) -> None:
    # On the synthetic objective the optimum keeps exactly the groups with a positive gain.
    for seed in (0, 1):
        ag = _ag(resnet_space, seed=seed, budget=48)
        config = RandomSearchConfig(budget=48, seed=seed)
        rand = _job(resnet_space, config)
        random_search(rand, config)
        best = lambda job: max(r.val_accuracy for r in job.records)  # noqa: E731
        assert best(ag) > best(rand)
        # Later rounds sample where the good ones are: their mean beats the random initial batch's.
        assert np.mean([r.val_accuracy for r in ag.records[-16:]]) > np.mean([r.val_accuracy for r in ag.records[:16]])


def test_ag_with_a_latency_limit_returns_an_architecture_within_it(resnet_space: ArchitectureSpace) -> None:
    job = _ag(resnet_space, seed=0, budget=48, latency_limit_ms=5.0)
    best = job.records[best_index(job.records, 5.0)]
    assert best.latency_ms <= 5.0
    late = [r.latency_ms <= 5.0 for r in job.records[16:]]
    assert np.mean(late) > np.mean([r.latency_ms <= 5.0 for r in job.records[:16]])


def test_bad_config_exits_2_naming_the_field(tmp_path, capsys) -> None:
    config = tmp_path / "ag.json"
    config.write_text(json.dumps({"budget": 10, "evaluator": {"epoch": 1}}))
    assert main(["search", "ag", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "evaluator.epoch" in err and "Extra inputs are not permitted" in err
    config.write_text(json.dumps({"budget": 0}))
    assert main(["search", "random", str(config)]) == 2
    assert "budget" in capsys.readouterr().err
    assert main(["search", "ag", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---- the real searches on digits ---------------------------------------------------------------------------

QUICK = {"supernet": "super_resnet", "budget": 24, "seed": 0,
         "evaluator": {"epochs": 1, "train_samples": 256, "supernet_epochs": 1}}


def _config(tmp: Path, name: str, **extra: object) -> Path:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps({**QUICK, **extra}))
    return path


def _comparable(result: dict) -> dict:
    drop = {"seconds", "latency_ms"}
    return {
        "evaluations": [{k: v for k, v in r.items() if k not in drop} for r in result["evaluations"]],
        "curve": result["curve"],
        "best": result["best"]["key"],
        "front": [r["key"] for r in result["pareto_front"]["points"]],
    }


@pytest.fixture(scope="module")
def ag_run(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("ag")
    config = _config(tmp, "ag", ag={"k": 4, "ticks": 10})
    assert main(["search", "ag", str(config), "--out", str(tmp / "out"), "--backend", "inline"]) == 0
    return config, json.loads((tmp / "out" / "search.json").read_text())


@pytest.mark.slow
def test_ag_search_writes_results_and_the_best_code(ag_run) -> None:
    config, result = ag_run
    out = Path(result["best"]["folder"]).parent
    assert len(result["evaluations"]) == 24 == len({r["key"] for r in result["evaluations"]})
    assert result["rounds"] == 2 and result["reused_from_log"] == 0
    assert (out / "search.png").stat().st_size > 10_000
    assert len((out / "evaluations.jsonl").read_text().splitlines()) == 24
    best = result["best"]
    assert best["val_accuracy"] == max(r["val_accuracy"] for r in result["evaluations"])
    assert [p["val_accuracy"] for p in result["curve"]][-1] == best["val_accuracy"]
    # best/ holds the trained sub-network: its generated code scores what the search recorded.
    from asgnas_ir.backends.search.config import EvaluatorSettings
    from asgnas_ir.backends.torch.evaluator import accuracy, search_split
    from asgnas_ir.testing import load_generated

    model = load_generated(best["folder"])
    split, _, _ = search_split(EvaluatorSettings(**QUICK["evaluator"]), 0)
    assert accuracy(model, split.x_test, split.y_test) == best["test_accuracy"]
    assert sum(p.numel() for p in model.parameters()) == best["params"] < result["supernet"]["params"]
    front = result["pareto_front"]["points"]
    assert [p["flops"] for p in front] == sorted(p["flops"] for p in front)


@pytest.mark.slow
def test_random_search_writes_distinct_valid_architectures(tmp_path) -> None:
    config = _config(tmp_path, "random", budget=12, evaluator={**QUICK["evaluator"], "inherit": False})
    assert main(["search", "random", str(config), "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "search.json").read_text())
    assert len({r["key"] for r in result["evaluations"]}) == 12
    assert not (tmp_path / "out" / "supernet.safetensors").exists()
    assert (tmp_path / "out" / "best" / "model.py").is_file() and (tmp_path / "out" / "search.png").is_file()


@pytest.mark.slow
def test_a_killed_search_resumes_to_the_uninterrupted_result(ag_run, tmp_path) -> None:
    config, uninterrupted = ag_run
    out = tmp_path / "out"
    log = out / "evaluations.jsonl"
    command = [sys.executable, "-m", "asgnas_ir.cli", "search", "ag", str(config), "--out", str(out), "--backend", "inline"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 18:  # past the first round's training
            break
        time.sleep(0.05)
    assert process.poll() is None, "the search finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = len(log.read_text().splitlines())
    assert 18 <= done < 24
    assert main(["search", "ag", str(config), "--out", str(out), "--resume", "--backend", "inline"]) == 0
    resumed = json.loads((out / "search.json").read_text())
    assert resumed["reused_from_log"] >= done
    assert _comparable(resumed) == _comparable(uninterrupted)


def _pool_results(backend: str, workers: int) -> list[Evaluation]:
    from asgnas_ir.backends.torch.evaluator import TorchEvaluator, TorchEvaluatorConfig

    evaluator = TorchEvaluator(TorchEvaluatorConfig(supernet="regnet_super", epochs=1, train_samples=128))
    batch = [(str(zero), zero) for zero in ([], [1], [2, 5], [0, 3, 7])]
    with EvaluationPool(evaluator, workers=workers, backend=backend) as pool:
        return [r.model_copy(update={"seconds": 0.0}) for r in pool.evaluate(batch)]


@pytest.fixture(scope="module")
def inline_results() -> list[Evaluation]:
    return _pool_results("inline", 1)


@pytest.mark.slow
def test_process_pool_evaluations_equal_inline(inline_results) -> None:
    assert _pool_results("process", 2) == inline_results
    assert len({r.val_accuracy for r in inline_results} | {r.flops for r in inline_results}) > 2


@pytest.mark.slow
def test_ray_pool_evaluations_equal_inline(inline_results) -> None:
    pytest.importorskip("ray", reason="the optional 'ray' extra is not installed")
    assert _pool_results("ray", 2) == inline_results
