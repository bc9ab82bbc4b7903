"""What `asgnas search ag|random` do around their loops: set up, evaluate in batches, write results.

`SearchJob.start` prepares the output folder, the evaluation log (kept with `--resume`, started
afresh otherwise), the super-network weights candidates inherit (trained once per search), the
architecture space and the evaluation pool. `SearchJob.query` evaluates a batch of keep-vectors in
the order given. `SearchJob.finish` writes `search.json` (every evaluation in query order, the
best-so-far curve, the best architecture, the Pareto front), `search.png`, and the best
architecture's generated code with its trained weights under `best/`.

A resumed search replays its seeded loop; every architecture it already paid for comes back from
the log, so its `search.json` equals an uninterrupted run's (measured latencies and seconds aside,
which are measurements). The config is stored beside the log and must match on `--resume`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asgnas_ir.backends.search.architecture import ArchitectureSpace
from asgnas_ir.backends.search.config import SearchConfig
from asgnas_ir.backends.search.evaluation import Evaluation, EvaluationLog, EvaluationPool
from asgnas_ir.backends.search.pareto import pareto_front
from asgnas_ir.backends.search.ranking import best_index, best_so_far, meets_limit
from asgnas_ir.errors import SpecError


def distinct_random(space: ArchitectureSpace, rng: np.random.Generator, count: int, seen: set[str],
                    attempts: int = 50) -> list[np.ndarray]:
    """Up to `count` random valid architectures whose keys are not in `seen` (added to it). Fewer
    only when `attempts`·count draws find no more (a small space is nearly exhausted)."""
    found: list[np.ndarray] = []
    for _ in range(count * attempts):
        if len(found) == count:
            break
        keep = space.random(rng)
        key = space.key(keep)
        if key not in seen:
            seen.add(key)
            found.append(keep)
    return found


@dataclass
class SearchJob:
    searcher: str
    config: SearchConfig
    out: Path
    space: ArchitectureSpace
    pool: EvaluationPool
    evaluator: Any
    console: Any = None
    records: list[Evaluation] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def start(cls, searcher: str, config: SearchConfig, options: Any, console: Any = None) -> SearchJob:
        from asgnas_ir.backends.torch.evaluator import (
            TorchEvaluator,
            TorchEvaluatorConfig,
            prepare,
            train_supernet,
        )

        out = Path(options.out or config.out)
        out.mkdir(parents=True, exist_ok=True)
        log = EvaluationLog(out / "evaluations.jsonl")
        stamp = out / "config.json"
        body = json.dumps({"searcher": searcher, **config.model_dump(exclude={"out"})}, indent=1)
        if options.resume:
            if stamp.exists() and stamp.read_text() != body:
                raise SpecError(f"--resume: '{out}' holds a search with a different config ('{stamp}'); "
                                "use that config, or another --out, or drop --resume to start afresh")
        else:
            if log.path.exists():
                _say(console, f"{log.path} exists: starting afresh (use --resume to continue that search)")
            log.reset()
            (out / "supernet.safetensors").unlink(missing_ok=True)
        stamp.write_text(body)
        evaluator_config = TorchEvaluatorConfig(supernet=config.supernet, seed=config.seed, **config.evaluator.model_dump())
        if config.evaluator.inherit:
            _say(console, f"training the super-network '{config.supernet}' once ({config.evaluator.supernet_epochs} epochs) "
                          "for candidates to inherit its weights")
            weights = train_supernet(evaluator_config, out / "supernet.safetensors")
            evaluator_config = evaluator_config.model_copy(update={"weights": str(weights.resolve())})
        prepared = prepare(evaluator_config)
        space = ArchitectureSpace(prepared.graph, prepared.space)
        evaluator = TorchEvaluator(evaluator_config)
        pool = EvaluationPool(evaluator, log=log, workers=options.workers, backend=options.backend,
                              ray_address=options.ray_address)
        if pool.done:
            _say(console, f"resuming: {len(pool.done)} evaluation(s) in {log.path} are reused")
        return cls(searcher, config, out, space, pool, evaluator, console)

    def query(self, keeps: Sequence[np.ndarray]) -> list[Evaluation]:
        """Evaluate keep-vectors (in order) and record them; prints one progress line per batch."""
        records = self.pool.evaluate([(self.space.key(k), self.space.zero_groups(k)) for k in keeps])
        self.records.extend(records)
        best = best_index(self.records, self.config.latency_limit_ms)
        shown = "none within the latency limit yet" if best is None else (
            f"best val {self.records[best].val_accuracy:.2f}% (test {self.records[best].test_accuracy:.2f}%)")
        _say(self.console, f"{self.searcher}: {len(self.records)}/{self.config.budget} evaluations, {shown}")
        return records

    def keep_matrix(self) -> np.ndarray:
        return np.stack([self.space.from_zero_groups(r.zero_groups) for r in self.records])

    def finish(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write search.json, search.png and best/; return the search.json body."""
        self.pool.close()
        limit = self.config.latency_limit_ms
        records = self.records
        full = self.space.full_cost()
        measured = all(r.latency_ms is not None for r in records)
        cost_name = "latency_ms" if measured else "flops"
        eligible = [r for r in records if meets_limit(r, limit)]
        front = pareto_front(eligible, cost=lambda r: getattr(r, cost_name), score=lambda r: r.val_accuracy)
        best = best_index(records, limit)
        result: dict[str, Any] = {
            "searcher": self.searcher,
            "config": self.config.model_dump(),
            "supernet": {"name": self.config.supernet, "operator_groups": self.space.size,
                         "group_ids": self.space.group_ids, "flops": full.flops, "params": full.params},
            "evaluations": [r.model_dump() for r in records],
            "curve": best_so_far(records, limit),
            "best": None,
            "pareto_front": {"cost": cost_name, "points": [r.model_dump() for r in front]},
            "reused_from_log": self.pool.reused,
            "seconds": time.perf_counter() - self.started,
            **(extra or {}),
        }
        if best is None:
            _say(self.console, f"no evaluated architecture runs within {limit} ms; no best/ written")
        else:
            chosen = records[best]
            folder = self.out / "best"
            self.evaluator.evaluate(chosen.zero_groups, keep=folder)
            result["best"] = {**chosen.model_dump(), "index": best, "folder": str(folder)}
            _say(self.console, f"best: {len(chosen.zero_groups)} of {self.space.size} operator groups removed, "
                               f"val {chosen.val_accuracy:.2f}%, test {chosen.test_accuracy:.2f}%, "
                               f"FLOPs {chosen.flops:,} of {full.flops:,}; code in {folder}/model.py")
        (self.out / "search.json").write_text(json.dumps(result, indent=1))
        plot_search(result, self.out / "search.png")
        _say(self.console, f"wrote {self.out}/search.json, search.png, evaluations.jsonl")
        return result


def plot_search(result: dict[str, Any], path: Path) -> None:
    """Left: best-so-far accuracy vs evaluations. Right: every evaluation by cost, the front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    curve = [p for p in result["curve"] if p["index"] is not None]
    n = [p["evaluations"] for p in curve]
    left.step(n, [p["val_accuracy"] for p in curve], where="post", label="best validation accuracy")
    left.step(n, [p["test_accuracy"] for p in curve], where="post", label="its test accuracy")
    left.set_xlabel("evaluations")
    left.set_ylabel("accuracy (%)")
    left.set_title(f"{result['searcher']} search on {result['supernet']['name']}")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    cost = result["pareto_front"]["cost"]
    scale, label = (1.0, "latency (ms)") if cost == "latency_ms" else (1e-6, "FLOPs (millions)")
    right.scatter([r[cost] * scale for r in result["evaluations"]], [r["val_accuracy"] for r in result["evaluations"]],
                  s=12, alpha=0.5, label="evaluated")
    points = result["pareto_front"]["points"]
    right.plot([r[cost] * scale for r in points], [r["val_accuracy"] for r in points], "o-", color="C3", label="Pareto front")
    right.set_xlabel(label)
    right.set_ylabel("validation accuracy (%)")
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _say(console: Any, message: str) -> None:
    if console is not None:
        console.print(message)
