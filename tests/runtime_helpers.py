"""Fixtures for runtime-database tests: a built_config configuration, and no alias left behind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import django_dbconfig.conf.config as config_module
from django_dbconfig import build_databases, remove_database
from django_dbconfig.runtime.databases import runtime_aliases, runtime_replicas


@pytest.fixture
def built_config(project: Any) -> Iterator[Callable[[dict[str, Any]], dict[str, Any]]]:
    """build_databases() from a dbconfig.json document; the previous last config comes back after."""
    before = config_module._last_config

    def build(document: dict[str, Any]) -> dict[str, Any]:
        project.write_config(document)
        return build_databases(project.root, environ={})

    yield build
    config_module._last_config = before


@pytest.fixture(autouse=True)
def _no_runtime_alias_left() -> Iterator[None]:
    yield
    replicas = runtime_replicas()
    # Replicas first: a primary with replicas is not removed.
    for alias in sorted(runtime_aliases(), key=lambda name: name not in replicas):
        remove_database(alias)


def entry_without_secrets(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if key != "PASSWORD"}
