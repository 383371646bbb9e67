"""backend "mysql" against a real MariaDB server: the session settings follow the server.

People coming from dj-database-url or django-environ write mysql:// for MariaDB. MySQL's
names (max_execution_time, transaction_read_only, performance_schema.session_status) are
unknown to MariaDB 10.11, so the engine rewrites a refused init_command in the server's
names and connects; dbcheck reads the settings back and says which backend to set (W103).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from django_dbconfig import load_config
from django_dbconfig.backends.mysql.settings import MariaDB, MySQL, for_other_server
from tests.conftest import django_connection, query_one
from tests.servers import MariaDBServer, TLSMaterial
from tests.test_dbcheck import configure, dbcheck_json, ids
from tests.test_dbcheck_mariadb import app_alias


@pytest.mark.mariadb
def test_mysql_url_on_mariadb_connects_with_mariadb_names(
    tmp_path: Path, shared_mariadb: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    url = f"mysql://{shared_mariadb['user']}@{shared_mariadb['host']}:{shared_mariadb['port']}/test"
    config = load_config(
        tmp_path,
        environ={
            "DATABASE_URL": url,
            "DBCONFIG_DEFAULT_STATEMENT_TIMEOUT": "2500ms",
            "DBCONFIG_DEFAULT_READ_ONLY": "true",
        },
    )
    settings = config.databases()["default"]
    assert settings["OPTIONS"]["init_command"] == (
        "SET SESSION max_execution_time=2500, transaction_read_only=1"
    )
    with caplog.at_level(logging.WARNING, logger="django_dbconfig.backends.mysql.base"):
        for _ in range(2):  # the second connection goes straight, with the learnt names
            with django_connection(settings) as connection:
                assert float(query_one(connection, "SELECT @@session.max_statement_time")) == 2.5
                assert query_one(connection, "SELECT @@session.tx_read_only") == 1
    assert [r.getMessage() for r in caplog.records] == [
        'Database "default": the server is MariaDB, but the backend is "mysql": set backend "mariadb" '
        "(or a mariadb:// URL) for this alias."
    ]


@pytest.mark.mariadb
@pytest.mark.slow
def test_mysql_backend_with_tls_on_mariadb_passes_dbcheck_and_says_which_backend(
    tmp_path: Path, mariadb_tls_server: MariaDBServer, tls_ca: TLSMaterial
) -> None:
    alias = app_alias(
        mariadb_tls_server,
        backend="mysql",
        sslmode="verify-ca",
        sslrootcert=str(tls_ca.ca_path),
        statement_timeout="1500ms",
        read_only=True,
    )
    status, result = dbcheck_json(configure(tmp_path, {"default": alias}))
    db = result["databases"][0]
    assert (status, db["vendor"], ids(db)) == (0, "mariadb", ["dbconfig.W103", "dbconfig.W104"])
    assert db["tls"]["in_use"] is True
    assert db["settings"] == {
        "statement_timeout": {"expected": "1500ms", "actual": "1500ms", "ok": True},
        "read_only": {"expected": True, "actual": True, "ok": True},
    }
    assert db["problems"][0]["hint"] == 'Set backend "mariadb" for "default" (or use a mariadb:// URL).'


@pytest.mark.mariadb
@pytest.mark.slow
def test_mysql_backend_requiring_tls_of_a_plain_mariadb_is_still_refused(
    tmp_path: Path, mariadb_plain_server: MariaDBServer
) -> None:
    alias = app_alias(mariadb_plain_server, backend="mysql", sslmode="require")
    status, result = dbcheck_json(configure(tmp_path, {"default": alias}))
    db = result["databases"][0]
    assert (status, db["vendor"], ids(db)) == (1, "mysql", ["dbconfig.E103"])


def test_mariadb_names_become_mysql_names_and_back() -> None:
    mysql = "SET SESSION " + ", ".join(
        [
            MySQL().tls_guard(),
            MySQL().statement_timeout(1500),
            "lock_wait_timeout=2",
            "transaction_read_only=1",
        ]
    )
    mariadb = "SET SESSION " + ", ".join(
        [MariaDB().tls_guard(), MariaDB().statement_timeout(1500), "lock_wait_timeout=2", "tx_read_only=1"]
    )
    assert for_other_server(mysql) == mariadb
    assert for_other_server(mariadb) == mysql
