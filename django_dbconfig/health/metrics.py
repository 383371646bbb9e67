"""The health of each alias as OpenMetrics text (what Prometheus scrapes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django_dbconfig.health.status import AliasHealth

CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# name, help, value of one alias (None: no sample for that alias)
_GAUGES: tuple[tuple[str, str, Callable[[AliasHealth], float | None]], ...] = (
    (
        "dbconfig_database_up",
        "Whether the alias answered its health probe (1) or not (0).",
        lambda health: 1.0 if health.ok else 0.0,
    ),
    (
        "dbconfig_database_latency_seconds",
        "Round trip of SELECT 1 on the application's own connection.",
        lambda health: None if health.latency_ms is None else health.latency_ms / 1000,
    ),
    (
        "dbconfig_replica_lag_seconds",
        "How far a replica's replay is behind its primary.",
        lambda health: health.replica_lag_s,
    ),
    (
        "dbconfig_tls_in_use",
        "Whether the alias's session is encrypted with TLS, as the server reports it.",
        lambda health: None if health.tls_in_use is None else float(health.tls_in_use),
    ),
)


def render(results: Sequence[AliasHealth]) -> str:
    """OpenMetrics text exposition: one gauge family per metric, one sample per alias."""
    lines: list[str] = []
    for name, help_text, value_of in _GAUGES:
        lines.append(f"# TYPE {name} gauge")
        if name.endswith("_seconds"):
            lines.append(f"# UNIT {name} seconds")
        lines.append(f"# HELP {name} {help_text}")
        for health in results:
            value = value_of(health)
            if value is not None:
                lines.append(f'{name}{{alias="{_escape(health.alias)}"}} {value!r}')
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
