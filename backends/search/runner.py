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
    "gold": "asgnas_ir.backends.search.runner:run_gold_search",
    "ag": "asgnas_ir.backends.search.ag:run_ag_search",
    "random": "asgnas_ir.backends.search.random_search:run_random_search",
}


def run_gold_search(config: Path, options: SearchOptions, console: Any = None) -> dict[str, Any]:
    """`asgnas search gold`: the torch GOLD, or the Keras one when CONFIG has `"framework": "keras"`
    (a `"framework": "torch"` is accepted and dropped; the torch config has no such field)."""
    import json

    try:
        body = json.loads(Path(config).read_text())
    except (OSError, ValueError):
        body = None  # the searcher's own loader reports a missing or broken file
    framework = body.get("framework", "torch") if isinstance(body, dict) else "torch"
    if framework == "keras":
        import os

        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        from asgnas_ir.backends.tensorflow.gold import run_gold_keras_search

        return run_gold_keras_search(Path(config), options, console=console)
    if framework != "torch":
        raise SpecError(f"config file '{config}': unknown framework '{framework}' for gold; choose torch or keras")
    from asgnas_ir.backends.torch import gold

    if isinstance(body, dict) and "framework" in body:
        settings = gold.GoldConfig.model_validate({k: v for k, v in body.items() if k != "framework"})
        if getattr(options, "out", None):
            settings = settings.model_copy(update={"out": options.out})
        return gold.run_gold(settings, resume=bool(getattr(options, "resume", False)), console=console)
    return gold.run_gold_search(Path(config), options, console=console)


def run_search(searcher: str, config: str | Path, options: SearchOptions, console: Any = None) -> dict[str, Any]:
    if searcher not in SEARCHERS:
        raise SpecError(f"unknown searcher '{searcher}'; choose one of {', '.join(SEARCHERS)}")
    module, _, name = SEARCHERS[searcher].partition(":")
    run = getattr(importlib.import_module(module), name)
    return run(Path(config), options, console=console)
