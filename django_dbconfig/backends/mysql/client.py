"""mysql/mariadb for `manage.py dbshell`, with the alias's session settings, TLS and read-only mode."""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterable
from typing import Any

from django.db.backends.mysql import client as django_client

# ssl_mode (as the backend renders sslmode) -> the client's options.
_MYSQL_SSL = {
    "DISABLED": ["--ssl-mode=DISABLED"],
    "PREFERRED": ["--ssl-mode=PREFERRED"],
    "REQUIRED": ["--ssl-mode=REQUIRED"],
    "VERIFY_CA": ["--ssl-mode=VERIFY_CA"],
    "VERIFY_IDENTITY": ["--ssl-mode=VERIFY_IDENTITY"],
}
# The MariaDB client has no --ssl-mode: --ssl asks for TLS, and its verification of the
# server's certificate checks the host name too.
_MARIADB_SSL = {
    "DISABLED": ["--skip-ssl"],
    "PREFERRED": [],
    "REQUIRED": ["--ssl"],
    "VERIFY_CA": ["--ssl", "--ssl-verify-server-cert"],
    "VERIFY_IDENTITY": ["--ssl", "--ssl-verify-server-cert"],
}


class DatabaseClient(django_client.DatabaseClient):
    """Django's mysql client, plus the init_command (session settings, read-only, TLS guard) and TLS mode."""

    @classmethod
    def settings_to_cmd_args_env(
        cls, settings_dict: dict[str, Any], parameters: Iterable[str]
    ) -> tuple[list[str], dict[str, str] | None]:
        args, env = super().settings_to_cmd_args_env(settings_dict, parameters)
        options = settings_dict.get("OPTIONS") or {}
        extra = []
        if options.get("init_command"):
            extra.append(f"--init-command={options['init_command']}")
        if options.get("connect_timeout"):
            extra.append(f"--connect-timeout={options['connect_timeout']}")
        ssl_mode = str(options.get("ssl_mode") or "").upper()
        if ssl_mode:
            table = _MARIADB_SSL if is_mariadb_client(args[0]) else _MYSQL_SSL
            extra += table.get(ssl_mode, [])
        # Options go before the database name and the user's own parameters.
        return [args[0], *extra, *args[1:]], env


@functools.lru_cache(maxsize=4)
def is_mariadb_client(program: str) -> bool:
    """Whether `program` is MariaDB's client (Debian's `mysql` is), by its --version."""
    path = shutil.which(program)
    if path is None:
        return False
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return "mariadb" in version.stdout.lower()
