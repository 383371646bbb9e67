"""What the configuration asks of each alias, as the probes compare it with the servers.

From the config that built the alias (`build_databases()` or `add_database()`) while
DATABASES still holds what it built, else read back from the DATABASES entry itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from django_dbconfig.backends import probe_module, vendor_of
from django_dbconfig.backends.base.probe import Expected
from django_dbconfig.conf.config import last_config
from django_dbconfig.runtime.databases import runtime_values


def expected_for(alias: str, entry: Mapping[str, Any]) -> Expected:
    """What is asked of an alias: from the config that built it, else from the entry itself."""
    vendor = vendor_of(entry)
    if vendor == "unknown":
        return Expected()
    module = probe_module(vendor)
    values = runtime_values(alias)
    if values is not None:
        added: Expected = module.expected_from_config(values, entry)
        return added
    config = last_config()
    if config is not None and config.holds(alias, entry):
        values = config.values(alias)
        result: Expected = module.expected_from_config(values, entry)
        return dataclasses.replace(
            result, replica_of=values.get("replica_of"), max_replica_lag=values.get("max_replica_lag")
        )
    fallback: Expected = module.expected_from_settings(entry)
    # A hand-written replica says which alias it mirrors in TEST.MIRROR.
    mirror = (entry.get("TEST") or {}).get("MIRROR")
    return dataclasses.replace(fallback, replica_of=str(mirror) if mirror else None)


def configured_backend(alias: str, entry: Mapping[str, Any]) -> str | None:
    """The backend the config chose for `alias` ("mariadb"), if DATABASES still holds its entry."""
    config = last_config()
    if config is not None and config.holds(alias, entry):
        return config.vendors[alias]
    return None
