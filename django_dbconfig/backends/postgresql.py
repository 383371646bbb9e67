"""PostgreSQL: session settings travel in the startup packet's `options`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import SERVER_KEYS, Backend, RenderContext, keepalive, render_extra, resolve_path, whole_seconds

# Session settings sent with `-c name=value` at connection start, in this order.
SESSION_SETTINGS = (
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "read_only",
)


def quote_ident(name: str) -> str:
    """Quote a schema name as PostgreSQL does: wrap in double quotes, double any inside."""
    return '"' + name.replace('"', '""') + '"'


def escape_option(value: str) -> str:
    """Escape for libpq's `options`: a space separates arguments unless backslash-escaped."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def session_settings(values: Mapping[str, Any]) -> dict[str, str]:
    """Every configured session setting as PostgreSQL's parameter name and text value."""
    found: dict[str, str] = {}
    for key in SESSION_SETTINGS:
        if key not in values:
            continue
        value = values[key]
        if key == "search_path":
            found[key] = ",".join(quote_ident(schema) for schema in value)
        elif key == "read_only":
            found["default_transaction_read_only"] = "on" if value else "off"
        else:
            found[key] = f"{value}ms"
    return found


def session_options(values: Mapping[str, Any]) -> str:
    """The `-c` switches for every configured session setting."""
    return " ".join(f"-c {name}={escape_option(text)}" for name, text in session_settings(values).items())


class PostgreSQL(Backend):
    name = "postgresql"
    display = "PostgreSQL"
    engine = "django_dbconfig.engines.postgresql"
    keys = SERVER_KEYS | {
        "pool",
        "search_path",
        "idle_in_transaction_session_timeout",
        "application_name",
        "target_session_attrs",
        "load_balance_hosts",
    }
    defaults = {
        "port": 5432,
        "conn_max_age": 60,
        "conn_health_checks": True,
        "connect_timeout": 5000,
        "network_timeout": 30_000,
    }
    driver_modules = ("psycopg", "psycopg2")
    install = 'pip install "django-dbconfig[postgresql]" (psycopg 3)'

    def validate(self, values: Mapping[str, Any]) -> tuple[str, str] | None:
        hosts, ports = values.get("host"), values.get("port")
        count = len(hosts) if isinstance(hosts, tuple) else 1
        if isinstance(ports, tuple) and len(ports) != count:
            return "port", (
                f"port lists {len(ports)} ports for {count} host{'s' if count != 1 else ''}. "
                "Give one port for every host, or one port for all of them."
            )
        return None

    def render_options(self, values: Mapping[str, Any], ctx: RenderContext) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for key in ("sslmode", "application_name", "target_session_attrs", "load_balance_hosts"):
            if key in values:
                options[key] = values[key]
        for key in ("sslrootcert", "sslcert", "sslkey"):
            if key in values:
                options[key] = resolve_path(values[key], ctx.base_dir)
        if "connect_timeout" in values:
            # libpq counts whole seconds and treats anything under 2 as 2.
            options["connect_timeout"] = whole_seconds(values["connect_timeout"], minimum=2)
        if values.get("network_timeout"):
            # libpq's own settings, so any psycopg engine (and the pool) honours them.
            # Keepalives find a silent server while waiting on a reply; tcp_user_timeout
            # ends a connection whose sent query is never acknowledged.
            tcp = keepalive(values["network_timeout"])
            options |= {
                "keepalives": 1,
                "keepalives_idle": tcp.idle,
                "keepalives_interval": tcp.interval,
                "keepalives_count": tcp.probes,
                "tcp_user_timeout": tcp.user_timeout_ms,
            }
        # Behind a pooler the settings cannot travel in the startup packet: see poolers.py.
        startup = "" if values.get("pooler") else session_options(values)
        if startup:
            options["options"] = startup
        if values.get("pool"):
            options["pool"] = values["pool"]
        return options

    def render(self, values: Mapping[str, Any], ctx: RenderContext) -> Any:
        settings = super().render(values, ctx)
        options = settings.get("OPTIONS", {})
        # A user's own libpq `options` adds to the session settings instead of replacing them.
        own = values.get("options.options")
        startup = "" if values.get("pooler") else session_options(values)
        if own and startup:
            options["options"] = f"{startup} {own}"
        if values.get("pool"):
            settings["CONN_MAX_AGE"] = 0
        # Several hosts (and ports) go to libpq as its comma-separated lists.
        if isinstance(values.get("host"), tuple):
            settings["HOST"] = ",".join(values["host"])
        if isinstance(values.get("port"), tuple):
            settings["PORT"] = ",".join(str(port) for port in values["port"])
        extra = render_extra(values, session_settings(values))
        if extra:
            settings["DBCONFIG"] = extra
        if values.get("pooler") == "transaction":
            # Django's documented requirement: a named cursor outlives the transaction
            # the pooler lends the server connection for.
            settings["DISABLE_SERVER_SIDE_CURSORS"] = True
        return settings
