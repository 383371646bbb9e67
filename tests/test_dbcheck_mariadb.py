"""dbcheck against real MariaDB servers: TLS levels mapped to ssl_mode, settings, read-only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.servers import MariaDBServer, TLSMaterial
from tests.test_dbcheck import PASSWORD, configure, dbcheck, dbcheck_json, ids

pytestmark = pytest.mark.mariadb


def app_alias(server: MariaDBServer, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "mariadb",
        "host": server.host,
        "port": server.port,
        "name": server.dbname,
        "user": server.user,
        "password": server.password,
        "connect_timeout": "3s",
        **extra,
    }


def session_tls(server: MariaDBServer, ca: str) -> tuple[str, str]:
    """Ssl_version and Ssl_cipher of a separate TLS session, as the server reports them."""
    import MySQLdb

    conn = MySQLdb.connect(**server.connect_kwargs(connect_timeout=3, ssl_mode="REQUIRED", ssl={"ca": ca}))
    try:
        cursor = conn.cursor()
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_%'")
        status = dict(cursor.fetchall())
    finally:
        conn.close()
    return status["Ssl_version"], status["Ssl_cipher"]


# sslmode -> (TLS in use, certificate verified); the CA is the right one.
TLS_CASES = {
    "allow": (True, False),
    "prefer": (True, False),
    "require": (True, False),
    "verify-ca": (True, True),
    "verify-full": (True, True),
}


@pytest.mark.parametrize("sslmode", list(TLS_CASES))
def test_tls_is_reported_from_the_session_status(
    tmp_path: Path, mariadb_tls_server: MariaDBServer, tls_ca: TLSMaterial, sslmode: str
) -> None:
    in_use, verified = TLS_CASES[sslmode]
    databases = configure(
        tmp_path, {"default": app_alias(mariadb_tls_server, sslmode=sslmode, sslrootcert=str(tls_ca.ca_path))}
    )
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    assert (status, db["ok"], db["error"], ids(db)) == (0, True, None, [])
    version, cipher = session_tls(mariadb_tls_server, str(tls_ca.ca_path))
    assert db["tls"] == {"in_use": in_use, "version": version, "cipher": cipher, "verified": verified}


def test_disable_is_a_plain_session(tmp_path: Path, mariadb_tls_server: MariaDBServer) -> None:
    databases = configure(tmp_path, {"default": app_alias(mariadb_tls_server, sslmode="disable")})
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    assert (status, ids(db)) == (0, [])
    assert db["tls"] == {"in_use": False, "version": None, "cipher": None, "verified": False}
    status, result = dbcheck_json(databases, "--require-tls")
    assert (status, ids(result["databases"][0])) == (1, ["dbconfig.E105"])


def test_verify_full_against_a_certificate_for_another_host_fails(
    tmp_path: Path, mariadb_server_factory: Callable[..., MariaDBServer], tls_ca: TLSMaterial
) -> None:
    server = mariadb_server_factory(tls=True, cert_hostname="db.other.example")
    databases = configure(
        tmp_path, {"default": app_alias(server, sslmode="verify-full", sslrootcert=str(tls_ca.ca_path))}
    )
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    assert (status, db["server_version"], ids(db)) == (1, None, ["dbconfig.E101"])
    assert "Validation of SSL server certificate failed" in db["error"]


@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
def test_a_wrong_ca_fails(
    tmp_path: Path, mariadb_tls_server: MariaDBServer, tls_ca: TLSMaterial, sslmode: str
) -> None:
    databases = configure(
        tmp_path,
        {"default": app_alias(mariadb_tls_server, sslmode=sslmode, sslrootcert=str(tls_ca.wrong_ca_path))},
    )
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    assert (status, ids(db)) == (1, ["dbconfig.E101"])
    assert "TLS/SSL error" in db["error"]


def test_require_against_a_server_without_tls_is_refused(
    tmp_path: Path, mariadb_plain_server: MariaDBServer
) -> None:
    databases = configure(tmp_path, {"default": app_alias(mariadb_plain_server, sslmode="require")})
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    assert (status, db["ok"], ids(db)) == (1, False, ["dbconfig.E103"])


def test_hand_written_ssl_mode_required_on_the_plain_machine_server_is_caught(
    shared_mariadb: dict[str, Any],
) -> None:
    # mysqlclient on MariaDB Connector/C connects without TLS here; the session says so.
    databases = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": shared_mariadb["host"],
            "PORT": shared_mariadb["port"],
            "NAME": shared_mariadb["database"],
            "USER": shared_mariadb["user"],
            "OPTIONS": {"ssl_mode": "REQUIRED", "connect_timeout": 3},
        }
    }
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    assert db["tls"] == {"in_use": False, "version": None, "cipher": None, "verified": False}
    assert (status, ids(db)) == (1, ["dbconfig.E103"])
    assert db["problems"][0]["message"] == (
        "sslmode require asks for TLS, but the server reports this session as not encrypted."
    )


def test_settings_and_read_only_are_read_back(tmp_path: Path, mariadb_tls_server: MariaDBServer) -> None:
    databases = configure(
        tmp_path,
        {
            "default": app_alias(
                mariadb_tls_server, statement_timeout="1500ms", lock_timeout="500ms", read_only=True
            )
        },
    )
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    # The throwaway server's user may write whatever the session says.
    assert (status, ids(db)) == (0, ["dbconfig.W104"])
    assert db["settings"] == {
        "statement_timeout": {"expected": "1500ms", "actual": "1500ms", "ok": True},
        # MariaDB counts lock waits in whole seconds: 500ms is rounded up, never down.
        "lock_timeout": {"expected": "1s", "actual": "1s", "ok": True},
        "read_only": {"expected": True, "actual": True, "ok": True},
    }


def test_an_options_override_of_init_command_is_a_mismatch(
    tmp_path: Path, mariadb_tls_server: MariaDBServer
) -> None:
    databases = configure(
        tmp_path,
        {
            "default": app_alias(
                mariadb_tls_server,
                statement_timeout="2s",
            )
        },
    )
    # settings.py replacing what build_databases() rendered (options.init_command with the
    # same variable is refused when the configuration is built).
    databases["default"]["OPTIONS"]["init_command"] = "SET SESSION max_statement_time=9"
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    assert status == 1
    assert db["settings"]["statement_timeout"] == {"expected": "2s", "actual": "9s", "ok": False}
    assert ids(db) == ["dbconfig.E109"]


def test_json_and_text_fields(tmp_path: Path, mariadb_tls_server: MariaDBServer, tls_ca: TLSMaterial) -> None:
    databases = configure(
        tmp_path,
        {"default": app_alias(mariadb_tls_server, sslmode="verify-full", sslrootcert=str(tls_ca.ca_path))},
    )
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    version = mariadb_tls_server.sql("SELECT VERSION()")[0][0]
    assert status == 0
    assert (db["alias"], db["ok"], db["vendor"]) == ("default", True, "mariadb")
    assert version.startswith(db["server_version"].removesuffix("-MariaDB") + "-MariaDB")
    assert db["schemas"] == {"expected": [], "missing": [], "created": []}
    assert db["settings"] == {"read_only": {"expected": None, "actual": False, "ok": True}}
    status, text = dbcheck(databases)
    assert status == 0
    assert "certificate verified, mode VERIFY_IDENTITY" in text
    assert PASSWORD not in text
