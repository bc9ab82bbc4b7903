"""An integer tensor meeting a whole scalar stays an integer in generated code (OPT's positions: the
offset `arange(S) + 2` indexes the position table; torch promotes `int64 + 2.0` to float)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.testing import load_generated  # noqa: E402


class OffsetPositions(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tokens = torch.nn.Embedding(20, 8)
        self.positions = torch.nn.Embedding(40, 8)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        offset = torch.arange(ids.shape[1], device=ids.device) * 3 + 2
        return self.tokens(ids) + self.positions(offset)


def test_offset_positions_stay_integers_at_any_length(tmp_path: Path) -> None:
    model = OffsetPositions().eval()
    ids = torch.randint(0, 20, (2, 6), generator=torch.Generator().manual_seed(0))
    ai.codegen(ai.compile(model, (ids,)), "torch", tmp_path)
    source = (tmp_path / "model.py").read_text()
    assert " * 3\n" in source and " + 2\n" in source  # not 3.0 / 2.0
    generated = load_generated(tmp_path)
    for shape in ((2, 6), (3, 9)):
        x = torch.randint(0, 20, shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            torch.testing.assert_close(generated(x), model(x), rtol=0, atol=1e-6)
