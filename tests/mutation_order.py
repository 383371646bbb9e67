"""A pytest plugin for mutation runs only (`[tool.mutmut]` loads it with `-p`): quickest tests first.

mutmut runs the tests that reach a mutated function with `-x`, so a mutant is killed by the
first test that fails. It passes them in no particular order: a slow test that happens to
come first makes every mutant of that function as slow as that test. Running the quickest
tests first (by the durations mutmut measured in its first run) kills most mutants in a
fraction of a second. The tests that run, and what they check, are the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# Written by mutmut in its working folder (mutants/, where the tests run).
STATS = Path("mutmut-stats.json")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    try:
        durations = json.loads(STATS.read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return  # mutmut's first run, which measures the durations
    # A test mutmut has not timed yet runs first: it is most likely a new, direct one.
    items.sort(key=lambda item: durations.get(item.nodeid.removeprefix("mutants/"), 0.0))
