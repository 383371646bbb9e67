"""dbcheck against real PostgreSQL servers: TLS at every sslmode, schemas, settings, read-only."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from django_dbconfig.backends.postgresql.settings import quote_ident
from tests.servers import PostgresServer, TLSMaterial
from tests.test_dbcheck import PASSWORD, by_alias, configure, dbcheck, dbcheck_json, ids

pytestmark = pytest.mark.postgresql


def app_alias(server: PostgresServer, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "postgresql",
        "host": server.host,
        "port": server.port,
        "name": server.dbname,
        "user": server.user,
        "password": server.password,
        "connect_timeout": "3s",
        **extra,
    }


def server_tls(server: PostgresServer, **params: Any) -> tuple[str, str]:
    """TLS version and cipher of a separate session with the same parameters, from pg_stat_ssl."""
    import psycopg

    with psycopg.connect(**server.connect_kwargs(connect_timeout=3, **params)) as conn:
        row = conn.execute("SELECT version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None
    return row[0], row[1]


# sslmode -> (TLS in use, certificate verified, problem ids); the CA is the right one.
TLS_CASES = {
    "disable": (False, False, []),
    # libpq tries without TLS first, and the server agrees; on loopback that is no warning (as W002).
    "allow": (False, False, []),
    "prefer": (True, True, []),  # with a root certificate libpq verifies the chain in every mode
    "require": (True, True, []),
    "verify-ca": (True, True, []),
    "verify-full": (True, True, []),
}


@pytest.mark.parametrize("sslmode", list(TLS_CASES))
def test_tls_is_reported_as_the_server_sees_the_session(
    tmp_path: Path, pg_tls_server: PostgresServer, tls_ca: TLSMaterial, sslmode: str
) -> None:
    in_use, verified, problems = TLS_CASES[sslmode]
    databases = configure(
        tmp_path, {"default": app_alias(pg_tls_server, sslmode=sslmode, sslrootcert=str(tls_ca.ca_path))}
    )
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    assert (status, db["ok"], db["error"], ids(db)) == (0, True, None, problems)
    if in_use:
        version, cipher = server_tls(pg_tls_server, sslmode="require")
        assert db["tls"] == {"in_use": True, "version": version, "cipher": cipher, "verified": verified}
    else:
        assert db["tls"] == {"in_use": False, "version": None, "cipher": None, "verified": False}


def test_require_without_a_root_certificate_is_encrypted_but_not_verified(
    tmp_path: Path, pg_tls_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.postgresql/root.crt
    databases = configure(tmp_path, {"default": app_alias(pg_tls_server, sslmode="require")})
    status, result = dbcheck_json(databases)
    tls = result["databases"][0]["tls"]
    assert status == 0
    assert (tls["in_use"], tls["verified"]) == (True, False)


def test_verify_full_against_a_certificate_for_another_host_fails(
    tmp_path: Path, pg_server_factory: Callable[..., PostgresServer], tls_ca: TLSMaterial
) -> None:
    server = pg_server_factory(tls=True, cert_hostname="db.other.example")
    databases = configure(
        tmp_path, {"default": app_alias(server, sslmode="verify-full", sslrootcert=str(tls_ca.ca_path))}
    )
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    assert (status, db["ok"], db["server_version"], ids(db)) == (1, False, None, ["dbconfig.E101"])
    assert 'server certificate for "db.other.example" does not match host name' in db["error"]


@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
def test_a_wrong_ca_fails(
    tmp_path: Path, pg_tls_server: PostgresServer, tls_ca: TLSMaterial, sslmode: str
) -> None:
    databases = configure(
        tmp_path,
        {"default": app_alias(pg_tls_server, sslmode=sslmode, sslrootcert=str(tls_ca.wrong_ca_path))},
    )
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    assert (status, ids(db)) == (1, ["dbconfig.E101"])
    assert "certificate verify failed" in db["error"]


def test_prefer_with_a_wrong_ca_falls_back_to_plain_text_quietly_on_loopback(
    tmp_path: Path, pg_tls_server: PostgresServer, tls_ca: TLSMaterial
) -> None:
    databases = configure(
        tmp_path,
        {"default": app_alias(pg_tls_server, sslmode="prefer", sslrootcert=str(tls_ca.wrong_ca_path))},
    )
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    # Plain text on loopback never leaves the machine: no W101, as the static W002 exempts it.
    assert (status, db["tls"]["in_use"], ids(db)) == (0, False, [])


@pytest.mark.slow
def test_prefer_without_tls_beyond_loopback_is_a_warning(tmp_path: Path, pg_in_netns: Any) -> None:
    server = pg_in_netns
    databases = configure(tmp_path, {"default": app_alias(server, sslmode="prefer")})
    assert databases["default"]["HOST"] != "127.0.0.1"
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    # The live W101 (this session is plain text) beside the static W002 (prefer is below require).
    assert (status, db["tls"]["in_use"], ids(db)) == (0, False, ["dbconfig.W101", "dbconfig.W002"])


def test_require_against_a_server_without_tls_fails(tmp_path: Path, pg_plain_server: PostgresServer) -> None:
    databases = configure(tmp_path, {"default": app_alias(pg_plain_server, sslmode="require")})
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    assert (status, ids(db)) == (1, ["dbconfig.E101"])
    assert "SSL" in db["error"]


def test_a_settings_edit_that_weakens_sslmode_is_an_error(
    tmp_path: Path, pg_tls_server: PostgresServer, tls_ca: TLSMaterial
) -> None:
    databases = configure(
        tmp_path,
        {"default": app_alias(pg_tls_server, sslmode="verify-full", sslrootcert=str(tls_ca.ca_path))},
    )
    # settings.py weakening what build_databases() rendered (options.sslmode against the
    # sslmode key is refused when the configuration is built).
    databases["default"]["OPTIONS"]["sslmode"] = "allow"
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    assert (status, db["tls"]["in_use"], ids(db)) == (1, False, ["dbconfig.E104"])
    assert db["problems"][0]["message"] == (
        "sslmode verify-full is configured, but the driver connected with allow."
    )


def test_require_tls_fails_a_plain_session(tmp_path: Path, pg_tls_server: PostgresServer) -> None:
    databases = configure(tmp_path, {"default": app_alias(pg_tls_server, sslmode="disable")})
    assert dbcheck_json(databases)[0] == 0
    status, result = dbcheck_json(databases, "--require-tls")
    assert (status, ids(result["databases"][0])) == (1, ["dbconfig.E105"])


def test_text_output_shows_tls_and_never_the_password(
    tmp_path: Path, pg_tls_server: PostgresServer, tls_ca: TLSMaterial
) -> None:
    databases = configure(
        tmp_path,
        {"default": app_alias(pg_tls_server, sslmode="verify-full", sslrootcert=str(tls_ca.ca_path))},
    )
    status, output = dbcheck(databases)
    version, cipher = server_tls(pg_tls_server, sslmode="require")
    assert status == 0
    assert f"tls       {version} {cipher}, certificate verified, mode verify-full" in output
    assert PASSWORD not in output


# ------------------------------------------------------------------ schemas (shared server)


@pytest.fixture
def odd_schema(shared_postgres: dict[str, Any]) -> Iterator[str]:
    """A unique schema name with capitals, a comma, a space and a quote; dropped afterwards if created."""
    import psycopg

    name = f'Dbcheck, {uuid.uuid4().hex[:8]} "Odd"'
    yield name
    with psycopg.connect(**shared_postgres, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)}")


def shared_alias(shared: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "backend": "postgresql",
        "host": shared["host"],
        "port": shared["port"],
        "name": shared["dbname"],
        "user": shared["user"],
        "connect_timeout": "3s",
        **extra,
    }


def test_missing_schema_is_reported_then_created(
    tmp_path: Path, shared_postgres: dict[str, Any], odd_schema: str
) -> None:
    import psycopg

    databases = configure(
        tmp_path, {"default": shared_alias(shared_postgres, search_path=[odd_schema, "public"])}
    )
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    assert status == 1
    assert db["schemas"] == {"expected": [odd_schema, "public"], "missing": [odd_schema], "created": []}
    assert ids(db) == ["dbconfig.E106"]
    assert db["settings"]["search_path"] == {
        "expected": f"{odd_schema}, public",
        "actual": f"{odd_schema}, public",
        "ok": True,
    }

    status, result = dbcheck_json(databases, "--create-schemas")
    db = result["databases"][0]
    assert (status, ids(db)) == (0, [])
    assert db["schemas"] == {"expected": [odd_schema, "public"], "missing": [], "created": [odd_schema]}
    with psycopg.connect(**shared_postgres) as conn:
        found = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [odd_schema]).fetchone()
    assert found == (1,)

    status, result = dbcheck_json(databases, "--create-schemas")
    assert (status, result["databases"][0]["schemas"]["created"]) == (0, [])


def test_schema_without_usage_is_reported(tmp_path: Path, pg_tls_server: PostgresServer) -> None:
    name = f"locked_{uuid.uuid4().hex[:8]}"
    pg_tls_server.psql(f"CREATE SCHEMA {name}")
    try:
        databases = configure(tmp_path, {"default": app_alias(pg_tls_server, search_path=[name, "public"])})
        status, result = dbcheck_json(databases)
    finally:
        pg_tls_server.psql(f"DROP SCHEMA {name}")
    db = result["databases"][0]
    assert (status, db["schemas"]["missing"], ids(db)) == (1, [], ["dbconfig.E107"])
    assert db["problems"][0]["message"] == f'The user may not use schema "{name}" (no USAGE privilege).'


# ------------------------------------------------------------------ session settings


def test_configured_settings_are_read_back(tmp_path: Path, shared_postgres: dict[str, Any]) -> None:
    databases = configure(
        tmp_path,
        {
            "default": shared_alias(
                shared_postgres,
                statement_timeout="30s",
                lock_timeout="500ms",
                idle_in_transaction_session_timeout="5min",
                application_name="dbcheck-test",
            )
        },
    )
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    assert (status, ids(db)) == (0, [])
    assert db["settings"] == {
        "statement_timeout": {"expected": "30s", "actual": "30s", "ok": True},
        "lock_timeout": {"expected": "500ms", "actual": "500ms", "ok": True},
        "idle_in_transaction_session_timeout": {"expected": "5min", "actual": "5min", "ok": True},
        "application_name": {"expected": "dbcheck-test", "actual": "dbcheck-test", "ok": True},
        "read_only": {"expected": None, "actual": False, "ok": True},
    }


def test_a_settings_edit_of_a_timeout_is_a_mismatch(tmp_path: Path, shared_postgres: dict[str, Any]) -> None:
    databases = configure(tmp_path, {"default": shared_alias(shared_postgres, statement_timeout="30s")})
    # settings.py adding a switch after what build_databases() rendered: libpq applies the last.
    databases["default"]["OPTIONS"]["options"] += " -c statement_timeout=5s"
    status, result = dbcheck_json(databases)
    db = result["databases"][0]
    assert status == 1
    assert db["settings"]["statement_timeout"] == {"expected": "30s", "actual": "5s", "ok": False}
    assert [(p["id"], p["message"]) for p in db["problems"]] == [
        ("dbconfig.E109", "statement_timeout is 5s on the server, but 30s is configured.")
    ]


def test_read_only_alias_is_read_only_on_the_server(tmp_path: Path, shared_postgres: dict[str, Any]) -> None:
    databases = configure(
        tmp_path,
        {
            "default": shared_alias(shared_postgres),
            "reports": shared_alias(shared_postgres, read_only=True),
            "sneaky": shared_alias(shared_postgres, read_only=True),
        },
    )
    databases["sneaky"]["OPTIONS"]["options"] += " -c default_transaction_read_only=off"
    status, result = dbcheck_json(databases)
    dbs = by_alias(result)
    assert status == 1
    assert dbs["reports"]["settings"]["read_only"] == {"expected": True, "actual": True, "ok": True}
    assert dbs["reports"]["ok"] is True
    assert dbs["sneaky"]["settings"]["read_only"] == {"expected": True, "actual": False, "ok": False}
    # The superuser can write whatever the session says (W104): see tests/test_readonly_roles.py.
    assert ids(dbs["sneaky"]) == ["dbconfig.E110", "dbconfig.W104"]


def test_json_fields_one_by_one(tmp_path: Path, pg_tls_server: PostgresServer, tls_ca: TLSMaterial) -> None:
    databases = configure(
        tmp_path,
        {
            "default": app_alias(
                pg_tls_server,
                sslmode="verify-full",
                sslrootcert=str(tls_ca.ca_path),
                search_path=["public"],
                statement_timeout="30s",
            )
        },
    )
    status, result = dbcheck_json(databases)
    assert status == 0
    assert set(result) == {"ok", "databases", "problems"}
    assert result["ok"] is True and result["problems"] == []
    db = result["databases"][0]
    assert list(db) == [
        "alias",
        "ok",
        "vendor",
        "server_version",
        "latency_ms",
        "tls",
        "schemas",
        "settings",
        "server",
        "replication",
        "cluster",
        "write_access",
        "problems",
        "error",
    ]
    version = pg_tls_server.psql("SHOW server_version")[0][0].split()[0]
    assert (db["alias"], db["ok"], db["vendor"], db["server_version"]) == (
        "default",
        True,
        "postgresql",
        version,
    )
    assert isinstance(db["latency_ms"], float) and 0 < db["latency_ms"] < 1000
    assert list(db["tls"]) == ["in_use", "version", "cipher", "verified"]
    assert db["tls"]["in_use"] is True and db["tls"]["verified"] is True
    assert db["schemas"] == {"expected": ["public"], "missing": [], "created": []}
    assert db["settings"]["statement_timeout"] == {"expected": "30s", "actual": "30s", "ok": True}
    assert db["server"] == {"host": pg_tls_server.host, "port": pg_tls_server.port, "role": "primary"}
    assert db["replication"] is None  # not a replica
    assert db["problems"] == [] and db["error"] is None
    assert PASSWORD not in str(result)
