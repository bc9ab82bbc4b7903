"""Scoring one architecture with PyTorch: build its sub-network, generate its code, train it briefly.

`TorchEvaluator` is the evaluator the ag and random searchers hand to `EvaluationPool`. Per candidate
it runs the path a user would: `ai.subnet` of the super-network's IR (compiled once per process and
cached) → `ai.codegen(target="torch")` into a temporary folder → import the generated `model.py`
with its weights → train it for `epochs` with SGD on the training part of the data set (`data`:
digits or digits_hard) → accuracy on a validation part carved from the training part (what
searchers select by) and on the held-out test part (reported only). With `latency` on, the median
CPU time of the *generated* module on a fixed batch is measured too.

Invariants:
- the result depends only on (config, architecture): torch runs on one thread inside the evaluator,
  the seed is reset per candidate and the data order is seeded per epoch, so a process pool, a Ray
  worker and an inline run give the same accuracies (latency is a measurement, not reproducible);
- the evaluator holds nothing but its config, so it pickles cheaply into worker processes; what is
  expensive to build (the compiled IR, the data split) is cached per process under the config.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from asgnas_ir.backends.data import Split, load_split
from asgnas_ir.backends.search.config import EvaluatorSettings
from asgnas_ir.backends.search.evaluation import Evaluation
from asgnas_ir.errors import SpecError


class TorchEvaluatorConfig(EvaluatorSettings):
    """Everything one evaluation depends on: the settings plus the super-network, seed and weights file."""

    supernet: str = "super_resnet"
    seed: int = 0
    weights: str | None = Field(
        None, description="safetensors state dict of the trained super-network; None: its initial weights (from `seed`)"
    )


@dataclass
class _Prepared:
    graph: Any
    space: Any
    split: Split
    x_val: np.ndarray
    y_val: np.ndarray


_CACHE: dict[str, _Prepared] = {}


def build_supernet(name: str, seed: int) -> nn.Module:
    """The super-network with the initial weights `seed` gives (the same in every process)."""
    from asgnas_ir.backends.torch.trainer import build_supernet as build

    torch.manual_seed(seed)
    return build(name)


def search_split(settings: EvaluatorSettings, seed: int) -> tuple[Split, np.ndarray, np.ndarray]:
    """(train/test split of `settings.data` whose train part excludes validation, x_val, y_val):
    stratified, seeded; the train part cut to `settings.train_samples` when set (the split's order is
    already shuffled)."""
    from sklearn.model_selection import train_test_split

    split = load_split(settings.data, settings.test_fraction, seed)
    x_train, x_val, y_train, y_val = train_test_split(
        split.x_train, split.y_train, test_size=settings.val_fraction, random_state=seed, stratify=split.y_train
    )
    n = settings.train_samples or len(x_train)
    return Split(x_train[:n], y_train[:n], split.x_test, split.y_test), x_val, y_val


def train_epochs(model: nn.Module, split: Split, settings: EvaluatorSettings, seed: int) -> None:
    """Plain SGD over the training part, on the model's device; the data order of epoch e depends on
    (seed, e) only."""
    from asgnas_ir.backends.torch.binding import model_device

    device = model_device(model)
    x_all, y_all = torch.from_numpy(split.x_train).to(device), torch.from_numpy(split.y_train).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    steps = math.ceil(len(x_all) / settings.batch_size)
    model.train()
    for epoch in range(settings.epochs):
        order = torch.randperm(len(x_all), generator=torch.Generator(device="cpu").manual_seed(seed * 100_003 + epoch)).to(device)
        for step in range(steps):
            index = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x_all[index]), y_all[index]).backward()
            optimizer.step()
    model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy in % (computed on the model's device); a diverged model (NaN logits) scores what its
    argmax gives, never an error."""
    from asgnas_ir.backends.torch.binding import model_device

    model.eval()
    with torch.no_grad():
        predictions = model(torch.from_numpy(x).to(model_device(model))).argmax(1).cpu().numpy()
    return float((predictions == y).mean() * 100)


def train_supernet(config: TorchEvaluatorConfig, path: str | Path) -> Path:
    """Train the super-network once (seeded) and save its state dict as safetensors at `path`.

    The file records the config it was trained with; an existing file with the same record is reused
    (a resumed search must not retrain), one with a different record is an error.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = Path(path)
    stamp = config.model_dump_json(include={"supernet", "seed", "data", "epochs", "batch_size", "lr", "momentum",
                                            "weight_decay", "test_fraction", "val_fraction", "train_samples",
                                            "supernet_epochs"})
    if path.exists():
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("asgnas_search") == stamp:
                return path
        raise SpecError(f"super-network weights '{path}' were trained with a different config; remove the file or use that config")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = build_supernet(config.supernet, config.seed)
        split, _, _ = search_split(config, config.seed)
        train_epochs(model, split, config.model_copy(update={"epochs": config.supernet_epochs}), config.seed)
    finally:
        torch.set_num_threads(threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata={"asgnas_search": stamp})
    tmp.replace(path)
    return path


def prepare(config: TorchEvaluatorConfig) -> _Prepared:
    """The super-network's IR, its erase-mode search space and the data, built once per process."""
    import asgnas_ir as ai

    cache_key = config.model_dump_json(include={"supernet", "seed", "weights", "data", "test_fraction", "val_fraction", "train_samples"})
    if cache_key not in _CACHE:
        model = build_supernet(config.supernet, config.seed)
        if config.weights is not None:
            from safetensors.torch import load_file

            if not Path(config.weights).is_file():
                raise SpecError(f"super-network weights '{config.weights}' do not exist")
            model.load_state_dict(load_file(config.weights))
        split, x_val, y_val = search_split(config, config.seed)
        graph = ai.compile(model.eval(), torch.from_numpy(split.x_test[:1]))
        _CACHE[cache_key] = _Prepared(graph, ai.search_space(graph, mode="erase"), split, x_val, y_val)
    return _CACHE[cache_key]


_TABLES: dict[str, Any] = {}


def _table(path: str) -> Any:
    """The latency table at `path`, read once per process."""
    from asgnas_ir.passes.analysis.latency import LatencyTable

    if path not in _TABLES:
        if not Path(path).is_file():
            raise SpecError(f"latency table '{path}' does not exist; write one with `asgnas profile IR.json -o {path}`")
        _TABLES[path] = LatencyTable.load(path)
    return _TABLES[path]


class TorchEvaluator:
    """`zero_groups -> Evaluation` for one search: picklable, deterministic per architecture."""

    def __init__(self, config: TorchEvaluatorConfig) -> None:
        self.config = config

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config.model_dump()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = TorchEvaluatorConfig.model_validate(state["config"])

    def __call__(self, zero_groups: list[int]) -> Evaluation:
        return self.evaluate(zero_groups)

    def evaluate(self, zero_groups: list[int], keep: str | Path | None = None) -> Evaluation:
        """Score one architecture; with `keep`, its generated code and *trained* weights stay there."""
        import asgnas_ir as ai
        from asgnas_ir.backends.torch.trainer import latency_ms
        from asgnas_ir.testing import load_generated

        started = time.perf_counter()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            prepared = prepare(self.config)
            sub = ai.subnet(prepared.graph, prepared.space, sorted(zero_groups)) if zero_groups else prepared.graph
            with tempfile.TemporaryDirectory(prefix="asgnas-candidate-") as tmp:
                folder = Path(keep) if keep is not None else Path(tmp)
                ai.codegen(sub, target="torch", out_dir=folder)
                model = load_generated(folder)
                torch.manual_seed(self.config.seed)
                train_epochs(model, prepared.split, self.config, self.config.seed)
                if keep is not None:
                    from safetensors.torch import save_file

                    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "weights.safetensors"))
                val = accuracy(model, prepared.x_val, prepared.y_val)
                test = accuracy(model, prepared.split.x_test, prepared.split.y_test)
                latency = None
                if self.config.latency_table is not None:
                    table = _table(self.config.latency_table)
                    latency = table.estimate(prepared.graph, prepared.space, sorted(zero_groups))
                elif self.config.latency:
                    batch = torch.from_numpy(prepared.split.x_test[: self.config.latency_batch])
                    latency = latency_ms(model, batch, repeats=self.config.latency_repeats)
            cost = ai.cost(sub)
        finally:
            torch.set_num_threads(threads)
        return Evaluation(
            key=json.dumps(sorted(zero_groups)), zero_groups=sorted(zero_groups), val_accuracy=val, test_accuracy=test,
            flops=int(cost.flops), params=int(cost.params), latency_ms=latency, seconds=time.perf_counter() - started,
        )

