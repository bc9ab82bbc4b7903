"""Do H2SPG's / HESSO's defaults drive the selected groups to exact zero on their own?

Trains one network on digits with the optimizer's options as given (defaults unless `--kwargs`) and
prints one JSON line: test accuracy before and after `finalize()`, how many selected groups the
optimizer itself made exactly zero before `finalize()`, and the step at which the last of them did.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/h2spg_defaults.py --net super_resnet --mode erase --epochs 10
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/h2spg_defaults.py --net resnet_basic --mode prune \
        --kwargs '{"base": "adam", "lr": 0.003}'

`resnet_basic` is the test replica (3 input channels): digits are repeated over three channels and
upscaled to 16x16. `--old` passes the defaults the optimizer had before issue 13 (λ = 1e-3, ε = 0).
The figures in docs/training.md come from `--epochs 20` with `--net super_resnet --mode erase|prune`
and `--net resnet_basic --mode prune`, each with no `--kwargs` (the defaults), with
`--kwargs '{"base": "adam", "lr": 0.003}'`, with `--optimizer hesso`, and against `--old`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import asgnas_ir as ai
from asgnas_ir.backends.data import load_split
from asgnas_ir.backends.torch import H2SPG, HESSO
from asgnas_ir.backends.torch.trainer import build_supernet, evaluate


def _model_and_data(net: str) -> tuple[nn.Module, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    split = load_split("digits", 0.25, 0)
    xs = [split.x_train, split.x_test]
    if net == "resnet_basic":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.models.resnet import ResNetBasic

        torch.manual_seed(0)
        model: nn.Module = ResNetBasic()
        xs = [np.repeat(np.repeat(np.repeat(x, 3, axis=1), 2, axis=2), 2, axis=3) for x in xs]
    else:
        torch.manual_seed(0)
        model = build_supernet(net)
    return model, xs[0], split.y_train, xs[1], split.y_test


def _zero_selected(opt: H2SPG) -> int:
    index = opt._all
    l1 = (index.matrix @ index.flat()[0].abs().unsqueeze(1)).squeeze(1)
    return sum(1 for g in opt.redundant_groups if float(l1[g]) == 0.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--net", default="super_resnet")
    parser.add_argument("--mode", default="erase")
    parser.add_argument("--optimizer", default="h2spg", choices=("h2spg", "hesso"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--kwargs", default="{}", help="optimizer options as JSON (lr 0.05 and warmup_steps 100 unless given)")
    parser.add_argument("--old", action="store_true", help="pass the pre-issue-13 defaults lmbda=1e-3, epsilon=0")
    args = parser.parse_args()

    model, x_train, y_train, x_test, y_test = _model_and_data(args.net)
    graph = ai.compile(model.eval(), torch.from_numpy(x_test[:1]))
    space = ai.search_space(graph, mode=args.mode)
    options = {"lr": 0.05, "target_group_sparsity": 0.5, "warmup_steps": 100, **json.loads(args.kwargs)}
    if args.old:
        options = {"lmbda": 1e-3, "epsilon": 0.0, **options}
    opt = (H2SPG if args.optimizer == "h2spg" else HESSO)(model, space, **options)
    x_all, y_all = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    steps = math.ceil(len(x_all) / args.batch_size)
    loss_fn = nn.CrossEntropyLoss()
    all_zero_at, step, started = None, 0, time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(epoch))
        for i in range(steps):
            index = order[i * args.batch_size : (i + 1) * args.batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x_all[index]), y_all[index]).backward()
            opt.step()
            step += 1
            if opt.selected and opt.redundant_groups:
                done = _zero_selected(opt) == len(opt.redundant_groups)
                all_zero_at = (all_zero_at or step) if done else None
    before, _ = evaluate(model, x_test, y_test)
    zero_before = _zero_selected(opt) if opt.selected else 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt.finalize()
    after, _ = evaluate(model, x_test, y_test)
    print(json.dumps({
        "net": args.net, "mode": args.mode, "optimizer": args.optimizer, "options": options, "epochs": args.epochs,
        "steps": step, "groups": len(space.groups), "selected": len(opt.redundant_groups),
        "zero_before_finalize": zero_before, "all_zero_at_step": all_zero_at,
        "acc_before": round(before, 2), "acc_after": round(after, 2),
        "finalize_warnings": [type(w.message).__name__ for w in caught], "seconds": round(time.perf_counter() - started, 1),
    }))


if __name__ == "__main__":
    main()
