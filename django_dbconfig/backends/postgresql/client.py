"""psql for `manage.py dbshell`, with the alias's session settings, TLS and read-only mode."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.backends.postgresql import client as django_client

# libpq reads these variables as it reads the connection's own parameters.
_ENVIRONMENT = {
    "options": "PGOPTIONS",  # the -c switches: search_path, timeouts, default_transaction_read_only
    "application_name": "PGAPPNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}


class DatabaseClient(django_client.DatabaseClient):
    """Django's psql client; the session settings travel to psql as libpq variables."""

    @classmethod
    def settings_to_cmd_args_env(
        cls, settings_dict: dict[str, Any], parameters: Iterable[str]
    ) -> tuple[list[str], dict[str, str] | None]:
        args, env = super().settings_to_cmd_args_env(settings_dict, parameters)
        options = settings_dict.get("OPTIONS") or {}
        extra = {variable: str(options[key]) for key, variable in _ENVIRONMENT.items() if options.get(key)}
        return args, ({**(env or {}), **extra} or None)
