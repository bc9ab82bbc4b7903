"""`asgnas search SEARCHER CONFIG`: one table from searcher name to the function that runs it.

Each entry is a dotted path, imported only when that searcher runs, so the CLI stays light and a
searcher's framework loads only for it. A run function takes the CONFIG path and the options every
searcher shares, writes its results under `out` (the result JSON, a PNG plot, the evaluation log)
and returns the result as a dict.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

from asgnas_ir.errors import SpecError


class SearchOptions(Protocol):
    out: str | None
    resume: bool
    workers: int
    backend: str
    ray_address: str | None


SEARCHERS: dict[str, str] = {
    "gold": "asgnas_ir.backends.torch.gold:run_gold_search",
    "ag": "asgnas_ir.backends.search.ag:run_ag_search",
    "random": "asgnas_ir.backends.search.random_search:run_random_search",
}


def run_search(searcher: str, config: str | Path, options: SearchOptions, console: Any = None) -> dict[str, Any]:
    if searcher not in SEARCHERS:
        raise SpecError(f"unknown searcher '{searcher}'; choose one of {', '.join(SEARCHERS)}")
    module, _, name = SEARCHERS[searcher].partition(":")
    run = getattr(importlib.import_module(module), name)
    return run(Path(config), options, console=console)
