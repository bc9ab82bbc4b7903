"""`asgnas search random CONFIG`: uniformly drawn valid architectures, the baseline for ag and gold.

Each draw keeps every operator group with one probability (itself uniform in [0.2, 1), so small and
large networks are both drawn) and is repaired into a valid network (`ArchitectureSpace.random`);
an architecture already drawn is drawn again. The seeded generator alone fixes the sequence, so
batching (and the number of workers) never changes which architectures are evaluated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from asgnas_ir.backends.search.config import SearchConfig, load_config
from asgnas_ir.backends.search.job import SearchJob, distinct_random


class RandomSearchConfig(SearchConfig):
    """The CONFIG of `asgnas search random`."""

    batch: int = Field(16, ge=1, description="architectures handed to the evaluation pool at once")


def random_search(job: SearchJob, config: RandomSearchConfig) -> None:
    """Evaluate `config.budget` distinct random architectures (fewer if the space runs out)."""
    rng = np.random.default_rng(config.seed)
    seen: set[str] = set()
    while len(job.records) < config.budget:
        keeps = distinct_random(job.space, rng, min(config.batch, config.budget - len(job.records)), seen)
        if not keeps:
            break
        job.query(keeps)


def run_random_search(config_path: Path, options: Any, console: Any = None) -> dict[str, Any]:
    config = load_config(RandomSearchConfig, config_path)
    job = SearchJob.start("random", config, options, console)
    try:
        random_search(job, config)
    finally:
        job.pool.close()
    return job.finish()
