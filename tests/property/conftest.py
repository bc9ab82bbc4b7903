"""Hypothesis profiles for the property tests, and the `nightly` marker's opt-in.

- `ci` (default): few examples, derandomized so the default `make test` is deterministic.
- `ci_adversarial`: fewer still, for the many (strategy, mode) tests of test_fuzz_adversarial.py, so the
  whole directory stays within about a minute of `make test` on two cores.
- `nightly`: >= 1000 examples from fresh randomness (`make fuzz`); a failure prints its reproduction blob.

`ASGNAS_FUZZ_PROFILE=nightly` runs the CI tests with the nightly budget too (for a long local run).
Tests marked `nightly` are deselected unless the `-m` expression names them, so a plain `pytest`
run never spends the nightly budget.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

settings.register_profile("ci", max_examples=60, derandomize=True, **_COMMON)
settings.register_profile("ci_adversarial", max_examples=20, derandomize=True, **_COMMON)
settings.register_profile("nightly", max_examples=1000, print_blob=True, **_COMMON)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "nightly" in (config.getoption("markexpr") or ""):
        return
    nightly = [item for item in items if item.get_closest_marker("nightly") is not None]
    if nightly:
        config.hook.pytest_deselected(items=nightly)
        items[:] = [item for item in items if item.get_closest_marker("nightly") is None]
