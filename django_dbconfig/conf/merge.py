"""Merge layers per key and per alias, keeping the origin of every value."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from django_dbconfig.conf.database_urls import expand_url
from django_dbconfig.conf.layer import Layer, Value
from django_dbconfig.core.keys import CONNECTION_KEYS


@dataclass(frozen=True)
class Merged:
    """The winning Value of every key of every alias, and of every route."""

    databases: dict[str, dict[str, Value]]
    routes: dict[str, Value]


def merge(layers: Sequence[Layer]) -> Merged:
    """Merge layers given lowest first.

    Within a layer, its `defaults` sit below its alias keys, and explicit
    keys beat the parts of a URL. A layer that sets a URL, or a different
    backend, replaces the connection parts of the layers below it.
    """
    declared = {"default"}
    for layer in layers:
        declared.update(alias for alias in layer.databases if alias not in layer.weak_aliases)
    aliases = [alias for alias in _ordered(layers) if alias in declared]

    databases: dict[str, dict[str, Value]] = {}
    for alias in aliases:
        merged: dict[str, Value] = {}
        for layer in layers:
            explicit = layer.databases.get(alias, {})
            entries = {key: _as_default(value) for key, value in layer.defaults.items()}
            if "url" in explicit:
                entries.update(expand_url(explicit["url"], alias=alias))
            entries.update(explicit)
            backend = entries.get("backend")
            if "url" in explicit or (
                backend and "backend" in merged and backend.value != merged["backend"].value
            ):
                for key in CONNECTION_KEYS:
                    merged.pop(key, None)
            merged.update(entries)
            chosen = merged.get("backend")
            if chosen is not None and str(chosen.origin) != "default":
                # Driver options belong to the backend chosen where they are set: another
                # layer choosing another backend leaves them unused (config.effective_values).
                for key, value in entries.items():
                    if key.startswith("options.") and not value.from_defaults:
                        merged[key] = replace(value, set_for=chosen.value)
        databases[alias] = merged

    routes: dict[str, Value] = {}
    for layer in layers:
        routes.update(layer.routes)
    return Merged(databases, routes)


def _as_default(value: Value) -> Value:
    return Value(value.value, value.origin, value.rank, from_defaults=True)


def _ordered(layers: Sequence[Layer]) -> list[str]:
    """Aliases in the order they first appear, lowest layer first (`default` leads)."""
    seen = {"default": None}
    for layer in layers:
        for alias in layer.databases:
            seen.setdefault(alias, None)
    return list(seen)
