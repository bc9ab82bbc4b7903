"""Evaluating architectures: the result record, the resumable JSONL log, and parallel execution.

A searcher hands a batch of architectures (as zero-group lists with their canonical keys) to
`EvaluationPool.evaluate`; the pool answers from the log what was evaluated before and runs the
rest on a local process pool (default), a Ray cluster (the optional `ray` extra) or inline. Each
result is appended to the log the moment it arrives, flushed and fsynced, so a search that is
killed keeps everything it finished; on `--resume` the searcher replays its seeded decisions and
every evaluation it already paid for comes back from the log instead of being run again.

An evaluator is any picklable callable `zero_groups -> Evaluation` (the torch one lives in
`asgnas_ir.backends.torch.evaluator`); it must be deterministic for a given architecture and seed,
which is what makes a resumed search end where an uninterrupted one would.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from asgnas_ir.errors import AsgnasError, SpecError

Backend = Literal["inline", "process", "ray"]
BACKENDS = ("inline", "process", "ray")


class Evaluation(BaseModel):
    """What one architecture scored. Accuracies in %, `latency_ms` of its generated code when measured."""

    key: str
    zero_groups: list[int]
    val_accuracy: float
    test_accuracy: float
    flops: int
    params: int
    latency_ms: float | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = Field(default_factory=dict)


Evaluator = Callable[[list[int]], Evaluation]


class EvaluationLog:
    """Append-only JSONL file of evaluations, one object per line, keyed by architecture key."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Evaluation]:
        """Every complete record in the file. A torn last line (the process was killed while writing
        it) is dropped with a warning; a bad line elsewhere means the file is not ours: an error."""
        if not self.path.exists():
            return {}
        records: dict[str, Evaluation] = {}
        lines = self.path.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = Evaluation.model_validate_json(line)
            except ValueError as exc:
                if number == len(lines):
                    warnings.warn(f"{self.path}: dropped an incomplete last line (an interrupted write)", stacklevel=2)
                    break
                raise SpecError(f"evaluation log '{self.path}', line {number}, is not an evaluation record: {exc}") from None
            records[record.key] = record
        return records

    def append(self, record: Evaluation) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(record.model_dump_json() + "\n")
            f.flush()
            os.fsync(f.fileno())

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)


def _run_one(evaluator: Evaluator, zero_groups: list[int]) -> Evaluation:
    return evaluator(zero_groups)


class EvaluationPool:
    """Runs evaluations where the user asked, remembering them in `log` (if any).

    Use as a context manager so worker processes (or the Ray connection this pool started) are shut
    down. `workers` is the number of evaluations in flight; `inline` runs them one by one here.
    """

    def __init__(
        self, evaluator: Evaluator, *, log: EvaluationLog | None = None, workers: int = 1,
        backend: Backend = "process", ray_address: str | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise SpecError(f"evaluation backend must be one of {', '.join(BACKENDS)}, not '{backend}'")
        if workers < 1:
            raise SpecError(f"workers must be at least 1, got {workers}")
        self.evaluator, self.log, self.workers = evaluator, log, workers
        self.backend: Backend = "inline" if backend == "process" and workers == 1 else backend
        self.ray_address = ray_address
        self.done: dict[str, Evaluation] = log.load() if log is not None else {}
        self.reused = 0
        self._executor: ProcessPoolExecutor | None = None
        self._ray: Any = None
        self._ray_started_here = False

    def __enter__(self) -> EvaluationPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)
            self._executor = None
        if self._ray is not None and self._ray_started_here:
            self._ray.shutdown()
        self._ray = None

    @property
    def evaluations(self) -> int:
        return len(self.done)

    def evaluate(self, batch: Sequence[tuple[str, list[int]]]) -> list[Evaluation]:
        """Evaluations of `(key, zero_groups)` pairs, in the order given; known keys are not rerun."""
        todo: dict[str, list[int]] = {}
        for key, zero in batch:
            if key in self.done:
                self.reused += 1
            else:
                todo.setdefault(key, zero)
        for record in self._run(list(todo.items())):
            self.done[record.key] = record
            if self.log is not None:
                self.log.append(record)
        return [self.done[key] for key, _ in batch]

    def _run(self, todo: list[tuple[str, list[int]]]) -> Any:
        if not todo:
            return
        if self.backend == "inline":
            for key, zero in todo:
                yield self._keyed(key, self.evaluator(zero))
        elif self.backend == "process":
            if self._executor is None:
                import multiprocessing

                # spawn, not fork: a forked copy of a process that already ran torch's thread pools can hang.
                self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
            futures = {self._executor.submit(_run_one, self.evaluator, zero): key for key, zero in todo}
            for future in as_completed(futures):
                yield self._keyed(futures[future], future.result())
        else:
            ray = self._connect_ray()
            remote = ray.remote(_run_one)
            pending = {remote.remote(self.evaluator, zero): key for key, zero in todo}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    yield self._keyed(pending.pop(ref), ray.get(ref))

    @staticmethod
    def _keyed(key: str, record: Evaluation) -> Evaluation:
        # The searcher's key is the authority (canonical form); an evaluator need not know it.
        return record if record.key == key else record.model_copy(update={"key": key})

    def _connect_ray(self) -> Any:
        if self._ray is None:
            try:
                import ray
            except ImportError:
                raise AsgnasError(
                    "the 'ray' evaluation backend needs Ray: pip install 'asgnas-ir[ray]' (or use --backend process)"
                ) from None
            if not ray.is_initialized():
                ray.init(address=self.ray_address, num_cpus=None if self.ray_address else self.workers,
                         include_dashboard=False, log_to_driver=False)
                self._ray_started_here = True
            self._ray = ray
        return self._ray

