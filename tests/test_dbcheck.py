"""manage.py dbcheck: command behaviour, JSON shape, SQLite, routing, bounded time, no secrets.

Helpers here are shared by tests/test_dbcheck_postgresql.py and tests/test_dbcheck_mariadb.py.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from django_dbconfig import build_databases
from django_dbconfig.backends.base.probe import scrub
from django_dbconfig.backends.postgresql.probe import split_identifiers, startup_settings
from tests.servers import HungServer

PASSWORD = "app-secret-pw"


class DefaultOnlyRouter:
    """Every model migrates on `default` only: routing is consistent whatever the aliases."""

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == "default"


ROUTERS = ["tests.test_dbcheck.DefaultOnlyRouter"]


@contextlib.contextmanager
def using_databases(databases: Mapping[str, Any], routers: list[str] | None = None) -> Iterator[None]:
    """Make `databases` what django.db.connections (and dbcheck) sees, for the block."""
    from django.db import connections

    old = connections.__dict__.get("settings")
    connections.__dict__["settings"] = connections.configure_settings(copy.deepcopy(dict(databases)))
    try:
        with override_settings(DATABASE_ROUTERS=ROUTERS if routers is None else routers):
            yield
    finally:
        if old is None:
            connections.__dict__.pop("settings", None)
        else:
            connections.__dict__["settings"] = old


def configure(tmp_path: Path, databases: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """DATABASES built by build_databases (so the config is the one dbcheck explains)."""
    return build_databases(tmp_path, environ={}, overrides={"databases": dict(databases), **extra})


def dbcheck(databases: Mapping[str, Any], *args: str, routers: list[str] | None = None) -> tuple[int, str]:
    """Run dbcheck; return its exit status and output (plain text or JSON)."""
    out = io.StringIO()
    with using_databases(databases, routers):
        try:
            call_command("dbcheck", *args, stdout=out, no_color=True)
        except CommandError as exc:
            assert exc.returncode == 1
            assert PASSWORD not in str(exc)
            return 1, out.getvalue()
    return 0, out.getvalue()


def dbcheck_json(databases: Mapping[str, Any], *args: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    status, output = dbcheck(databases, "--format", "json", *args, **kwargs)
    assert PASSWORD not in output
    return status, json.loads(output)


def by_alias(result: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {db["alias"]: db for db in result["databases"]}


def ids(db: Mapping[str, Any]) -> list[str]:
    return [p["id"] for p in db["problems"]]


def sqlite(tmp_path: Path, name: str = "db.sqlite3") -> dict[str, Any]:
    return {"backend": "sqlite", "name": str(tmp_path / name)}


# ------------------------------------------------------------------ unit: parsing and scrubbing


def test_libpq_options_are_read_as_the_server_reads_them() -> None:
    text = r'-c search_path="My\ Schema",public -c statement_timeout=30000ms -c statement_timeout=5s'
    assert startup_settings(text) == {"search_path": '"My Schema",public', "statement_timeout": "5s"}


def test_search_path_is_split_with_quotes_and_case_folding() -> None:
    assert split_identifiers('"My ""Odd"" Schema", Public ,"$user"') == ['My "Odd" Schema', "public", "$user"]


def test_scrub_removes_password_from_a_repeated_connection_string() -> None:
    text = (
        f"FATAL: bad login host=db password={PASSWORD} dbname=app; "
        f"also postgresql://app:{PASSWORD}@db/app and password='x y' and pwd: hunter22"
    )
    scrubbed = scrub(text, [PASSWORD])
    assert PASSWORD not in scrubbed
    assert "x y" not in scrubbed and "hunter22" not in scrubbed
    assert "postgresql://app:********@db/app" in scrubbed


def test_scrub_removes_the_url_encoded_password() -> None:
    secret = "p@ss w/rd!"
    assert "p%40ss" not in scrub("dsn=mysql://u:p%40ss%20w%2Frd%21@h/db", [secret])


# ------------------------------------------------------------------ SQLite: the README's first command


def test_sqlite_aliases_pass_with_exit_status_0(tmp_path: Path) -> None:
    (tmp_path / "db.sqlite3").touch()
    databases = configure(
        tmp_path,
        {
            "default": sqlite(tmp_path),
            "analytics": {**sqlite(tmp_path, "analytics.sqlite3"), "lock_timeout": "2s"},
        },
    )
    (tmp_path / "analytics.sqlite3").touch()
    status, result = dbcheck_json(databases)
    import sqlite3

    assert status == 0
    assert result["ok"] is True
    default, analytics = result["databases"]
    assert default == {
        "alias": "default",
        "ok": True,
        "vendor": "sqlite",
        "server_version": sqlite3.sqlite_version,
        "latency_ms": default["latency_ms"],
        "tls": None,
        "schemas": {"expected": [], "missing": [], "created": []},
        "settings": {},
        "server": None,
        "replication": None,
        "cluster": None,
        "write_access": None,
        "problems": [],
        "error": None,
    }
    assert isinstance(default["latency_ms"], float)
    assert analytics["settings"] == {"lock_timeout": {"expected": "2s", "actual": "2s", "ok": True}}


def test_missing_sqlite_file_is_not_created_and_only_warned(tmp_path: Path) -> None:
    databases = configure(tmp_path, {"default": sqlite(tmp_path)})
    status, result = dbcheck_json(databases)
    assert status == 0
    assert ids(result["databases"][0]) == ["dbconfig.W102"]
    assert not (tmp_path / "db.sqlite3").exists()


def test_text_output_is_a_plain_table_with_no_color(tmp_path: Path) -> None:
    (tmp_path / "db.sqlite3").touch()
    status, output = dbcheck(configure(tmp_path, {"default": sqlite(tmp_path)}))
    assert status == 0
    assert "\x1b[" not in output
    lines = output.splitlines()
    assert lines[0].startswith("default  sqlite ") and lines[0].endswith("OK")
    assert lines[-1] == "All 1 database passed."


def test_database_option_limits_the_aliases_and_rejects_unknown_ones(tmp_path: Path) -> None:
    (tmp_path / "a.sqlite3").touch()
    databases = configure(
        tmp_path, {"default": sqlite(tmp_path, "a.sqlite3"), "other": sqlite(tmp_path, "a.sqlite3")}
    )
    status, result = dbcheck_json(databases, "--database", "other")
    assert status == 0
    assert [db["alias"] for db in result["databases"]] == ["other"]
    with using_databases(databases), pytest.raises(CommandError, match="invalid choice"):
        call_command("dbcheck", "--database", "nope", stdout=io.StringIO())


# ------------------------------------------------------------------ routing consistency


class RefuseAllRouter:
    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return False


class ToNowhereRouter:
    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return "nowhere" if model._meta.label == "shop.Order" else None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == "default"


def _routing(tmp_path: Path, routers: list[str]) -> tuple[int, dict[str, Any]]:
    (tmp_path / "a.sqlite3").touch()
    databases = configure(
        tmp_path, {"default": sqlite(tmp_path, "a.sqlite3"), "analytics": sqlite(tmp_path, "a.sqlite3")}
    )
    return dbcheck_json(databases, routers=routers)


class AllowAllRouter:
    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return True


def test_without_a_router_one_warning_not_an_error_per_model(tmp_path: Path) -> None:
    status, result = _routing(tmp_path, [])
    assert status == 0 and result["ok"] is True
    assert [(p["level"], p["id"]) for p in result["problems"]] == [("warning", "dbconfig.W201")]
    assert result["problems"][0]["message"].startswith("DATABASE_ROUTERS is empty: every model (")
    assert result["problems"][0]["message"].endswith(") migrates on every alias (default, analytics).")


def test_models_migrating_on_two_aliases_are_one_error_listing_them(tmp_path: Path) -> None:
    status, result = _routing(tmp_path, ["tests.test_dbcheck.AllowAllRouter"])
    assert status == 1 and result["ok"] is False
    assert all(db["ok"] for db in result["databases"])
    assert [p["id"] for p in result["problems"]] == ["dbconfig.E202"]
    assert result["problems"][0]["message"] == (
        "contenttypes.ContentType, auth.Permission, auth.Group, auth.User, shop.Order, shop.Customer, "
        "reports.DailyTotal may migrate on 2 aliases (default, analytics); each model must have exactly one."
    )


def test_model_migrating_nowhere_is_an_error(tmp_path: Path) -> None:
    status, result = _routing(tmp_path, ["tests.test_dbcheck.RefuseAllRouter"])
    assert status == 1
    assert {p["id"] for p in result["problems"]} == {"dbconfig.E203"}


def test_model_routed_to_a_missing_alias_is_an_error(tmp_path: Path) -> None:
    status, result = _routing(tmp_path, ["tests.test_dbcheck.ToNowhereRouter"])
    assert status == 1
    assert [(p["id"], p["message"]) for p in result["problems"]] == [
        ("dbconfig.E201", 'shop.Order is routed to "nowhere", which is not in DATABASES.')
    ]


def test_consistent_routing_passes(tmp_path: Path) -> None:
    status, result = _routing(tmp_path, ROUTERS)
    assert (status, result["problems"]) == (0, [])


# ------------------------------------------------------------------ bounded time


def _pg_alias(host: str, port: int, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "postgresql",
        "host": host,
        "port": port,
        "name": "app",
        "user": "app",
        "password": PASSWORD,
        **extra,
    }


def test_hung_server_fails_within_its_connect_timeout_while_others_are_reported(
    tmp_path: Path, hung_server: HungServer
) -> None:
    (tmp_path / "db.sqlite3").touch()
    databases = configure(
        tmp_path,
        {
            "default": sqlite(tmp_path),
            "hung_pg": _pg_alias(hung_server.host, hung_server.port, connect_timeout="2s"),
            "hung_my": {
                "backend": "mariadb",
                "host": hung_server.host,
                "port": hung_server.port,
                "name": "app",
                "user": "app",
                "password": PASSWORD,
                "connect_timeout": "2s",
            },
        },
    )
    start = time.monotonic()
    status, result = dbcheck_json(databases)
    elapsed = time.monotonic() - start
    assert status == 1
    assert 1.9 < elapsed < 2.9, elapsed
    dbs = by_alias(result)
    assert dbs["default"]["ok"] is True
    for alias in ("hung_pg", "hung_my"):
        assert dbs[alias]["ok"] is False
        assert dbs[alias]["server_version"] is None
        assert dbs[alias]["error"]
        assert ids(dbs[alias]) == ["dbconfig.E102"]
    assert hung_server.accepted >= 2


def test_a_probe_that_outlives_its_timeout_is_abandoned(tmp_path: Path, hung_server: HungServer) -> None:
    # libpq waits at least 2 s; --timeout 1 makes dbcheck give up on its own first.
    databases = configure(tmp_path, {"default": _pg_alias(hung_server.host, hung_server.port)})
    start = time.monotonic()
    status, result = dbcheck_json(databases, "--timeout", "1")
    elapsed = time.monotonic() - start
    assert status == 1
    assert elapsed < 1.9, elapsed
    db = result["databases"][0]
    assert ids(db) == ["dbconfig.E102"]
    assert db["error"].startswith("timed out: the server did not answer within 1 s")


# ------------------------------------------------------------------ secrets never in output


class _FakeServer:
    """Answers every connection with one canned reply (after reading what the client sends)."""

    def __init__(self, handler: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(3)
                with contextlib.suppress(OSError):
                    self.handler(conn)

    def close(self) -> None:
        self.sock.close()


_LEAK = f"host=127.0.0.1 user=app password={PASSWORD} dbname=app (postgresql://app:{PASSWORD}@127.0.0.1/app)"


def _pg_error_reply(conn: socket.socket) -> None:
    while True:
        length, code = struct.unpack("!ii", conn.recv(8))
        if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: "no"
            conn.sendall(b"N")
            continue
        conn.recv(length - 8)
        break
    fields = b"SFATAL\0VFATAL\0C28000\0M" + f"login refused for {_LEAK}".encode() + b"\0\0"
    conn.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)
    conn.recv(1)


def _mysql_error_greeting(conn: socket.socket) -> None:
    payload = b"\xff" + struct.pack("<H", 1045) + b"#28000" + f"Access denied: {_LEAK}".encode()
    conn.sendall(struct.pack("<I", len(payload))[:3] + b"\x00" + payload)
    conn.recv(1)


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_server_error_repeating_the_connection_string_is_scrubbed(tmp_path: Path, backend: str) -> None:
    server = _FakeServer(_pg_error_reply if backend == "postgresql" else _mysql_error_greeting)
    try:
        databases = configure(
            tmp_path,
            {
                "default": {
                    "backend": backend,
                    "host": "127.0.0.1",
                    "port": server.port,
                    "name": "app",
                    "user": "app",
                    "password": PASSWORD,
                    "connect_timeout": "2s",
                }
            },
        )
        status, text = dbcheck(databases)
        _, result = dbcheck_json(databases)
    finally:
        server.close()
    assert status == 1
    db = result["databases"][0]
    assert "login refused" in db["error"] or "Access denied" in db["error"]
    assert "password=********" in db["error"]
    for output in (text, json.dumps(result)):
        assert PASSWORD not in output
