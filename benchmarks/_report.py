"""Shared helpers for benchmark scripts: machine facts and writing one section of BENCHMARKS.md.

Each script owns one section between `<!-- begin NAME -->` and `<!-- end NAME -->` markers, so
scripts can be rerun independently without clobbering each other's figures.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nWritten by the scripts in `benchmarks/`; do not edit by hand. Rerun a script to refresh its section.\n"


def machine() -> str:
    cpus = os.cpu_count()
    return f"{platform.machine()}, {cpus} CPU core(s), Python {platform.python_version()}, {platform.system()}"


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_section(name: str, body: str) -> None:
    text = REPORT.read_text() if REPORT.exists() else HEADER
    block = f"<!-- begin {name} -->\n{body.rstrip()}\n<!-- end {name} -->"
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    REPORT.write_text(text)
