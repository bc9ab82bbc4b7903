"""The H2SPG snippet of docs/user-guide.md §6, run as written on the bundled SuperResNet and digits.

The call is read from the guide itself (the `opt = H2SPG(...)` line of the §6 code block), so editing
the guide changes what runs here. Issue 13: that call used to leave every chosen group far from zero,
and `finalize()` forced them, taking test accuracy from 98 % to 11 %.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import asgnas_ir as ai
from asgnas_ir.backends.data import load_split
from asgnas_ir.backends.torch import H2SPG, GroupsNotZeroWarning
from asgnas_ir.backends.torch.trainer import build_supernet, evaluate
from asgnas_ir.testing import load_generated

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "user-guide.md"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _guide_snippet() -> tuple[str, dict[str, object]]:
    """The §6 code block and the keyword arguments of its `H2SPG(model, space, ...)` call."""
    section = GUIDE.read_text().split("## 6.", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, "docs/user-guide.md §6 has no python block"
    code = block.group(1)
    assert "from asgnas_ir.backends.torch import H2SPG" in code
    calls = [line for line in code.splitlines() if line.startswith("opt = H2SPG(")]
    assert len(calls) == 1, "§6 should hold exactly one `opt = H2SPG(...)` line"
    call = ast.parse(calls[0]).body[0].value
    assert isinstance(call, ast.Call) and [ast.unparse(a) for a in call.args] == ["model", "space"]
    return code, {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg is not None}


def test_guide_snippet_is_parsed() -> None:
    code, kwargs = _guide_snippet()
    assert kwargs["warmup_steps"] == 100 and "opt.finalize()" in code and "opt.zero_groups()" in code


@pytest.mark.slow
def test_guide_h2spg_call_zeroes_its_groups_so_finalize_costs_nothing(tmp_path: Path) -> None:
    """Erase mode on SuperResNet, batches of 64 (`asgnas train`'s), for the fewest whole epochs that cover warm-up
    and `shrink_period`: every chosen group is exactly zero before finalize(), which therefore warns about nothing,
    and the accuracy after it (and of the generated sub-network) is within 1 point of the accuracy before it."""
    _, kwargs = _guide_snippet()
    split = load_split("digits", 0.25, 0)
    example = torch.from_numpy(split.x_test[:1])
    torch.manual_seed(0)
    model = build_supernet("super_resnet")
    graph = ai.compile(model.eval(), example)
    space = ai.search_space(graph, mode="erase")
    opt = H2SPG(model, space, **kwargs)  # type: ignore[arg-type]

    x_all, y_all = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train).long()
    batch, steps = 64, math.ceil(len(x_all) / 64)
    epochs = math.ceil((opt.warmup_steps + opt.shrink_period) / steps) + 1  # 11 of the 20
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(epoch))
        for i in range(steps):
            index = order[i * batch : (i + 1) * batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x_all[index]), y_all[index]).backward()
            opt.step()

    assert opt.selected and len(opt.redundant_groups) == math.floor(0.5 * len(space.groups))
    assert set(opt.redundant_groups) <= set(opt.zero_groups()), "the optimizer itself did not zero every chosen group"
    before, _ = evaluate(model, split.x_test, split.y_test)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GroupsNotZeroWarning)
        opt.finalize()
    after, _ = evaluate(model, split.x_test, split.y_test)
    assert before >= 90.0, f"SuperResNet trained to only {before:.1f}% on digits"
    assert abs(after - before) < 1.0, f"finalize() took test accuracy from {before:.1f}% to {after:.1f}%"

    graph.update_weights(model)
    ai.codegen(ai.subnet(graph, space, opt.zero_groups()), "torch", str(tmp_path))
    generated = load_generated(tmp_path)
    with torch.no_grad():
        sub_logits = generated(torch.from_numpy(split.x_test)).numpy()
    sub = float((sub_logits.argmax(1) == split.y_test).mean() * 100)
    assert abs(sub - after) < 1.0, f"the generated sub-network scores {sub:.1f}%, the finalized model {after:.1f}%"
    assert np.isfinite(sub_logits).all()
