"""System checks: the static ones open no connection; the live ones run under check --database."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import Error, Warning
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_dbconfig import build_databases, checks
from django_dbconfig.core import problems
from tests.servers import HungServer
from tests.test_dbcheck import PASSWORD, using_databases


def static(databases: dict[str, Any]) -> list[tuple[str, str]]:
    with using_databases(databases):
        return [(m.id or "", m.msg) for m in checks.check_configuration()]


def build(tmp_path: Path, databases: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return build_databases(tmp_path, environ={}, overrides={"databases": databases, **extra})


def pg(**extra: Any) -> dict[str, Any]:
    return {"backend": "postgresql", "host": "127.0.0.1", "name": "app", "password": PASSWORD, **extra}


def test_a_clean_configuration_has_no_messages(tmp_path: Path) -> None:
    assert static(build(tmp_path, {"default": pg(sslmode="disable")})) == []


def test_unlimited_persistent_connections_and_weak_remote_tls_warn(tmp_path: Path) -> None:
    databases = build(
        tmp_path,
        {
            "default": pg(conn_max_age=None),
            "remote": pg(host="db.example.com", sslmode="prefer"),
            "remote_ok": pg(host="db.example.com", sslmode="verify-full"),
            "socket": pg(host="/run/postgresql"),
            "remote_my": {"backend": "mariadb", "host": "10.0.0.7", "name": "app", "sslmode": "prefer"},
        },
    )
    assert static(databases) == [
        (
            "dbconfig.W001",
            '"default" keeps connections open forever (CONN_MAX_AGE is None): a server '
            "restart or failover leaves them stale.",
        ),
        (
            "dbconfig.W002",
            '"remote" connects to db.example.com with sslmode prefer: credentials and data '
            "may cross the network unencrypted.",
        ),
        (
            "dbconfig.W002",
            '"remote_my" connects to 10.0.0.7 with sslmode prefer: credentials and data '
            "may cross the network unencrypted.",
        ),
    ]


def test_reserved_word_as_schema_name_warns(tmp_path: Path) -> None:
    databases = build(tmp_path, {"default": pg(search_path=["app", "user", "Order"])})
    assert static(databases) == [
        ("dbconfig.W005", '"default" has the reserved word "user" as a schema in its search_path.'),
        ("dbconfig.W005", '"default" has the reserved word "Order" as a schema in its search_path.'),
    ]


def test_reserved_word_found_in_a_hand_written_entry() -> None:
    databases = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "app",
            "OPTIONS": {"options": '-c search_path=app,"select"'},
        }
    }
    assert [i for i, _ in static(databases)] == ["dbconfig.W005"]


def test_secrets_file_readable_by_others_and_not_ignored_by_git(tmp_path: Path) -> None:
    secrets = tmp_path / ".secrets"
    secrets.mkdir()
    (secrets / "dbconfig.json").write_text('{"databases": {"default": {"password": "x"}}}')
    (secrets / "dbconfig.json").chmod(0o644)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    databases = build(tmp_path, {"default": pg(sslmode="disable")})
    found = static(databases)
    assert [i for i, _ in found] == ["dbconfig.W003", "dbconfig.W004"]
    assert found[0][1] == (
        f"The secrets file {secrets / 'dbconfig.json'} is readable or writable by group or others (mode 644)."
    )

    (secrets / "dbconfig.json").chmod(0o600)
    (tmp_path / ".gitignore").write_text(".secrets/\n")
    assert static(build(tmp_path, {"default": pg(sslmode="disable")})) == []


def test_no_git_warning_outside_a_repository(tmp_path: Path) -> None:
    secrets = tmp_path / ".secrets"
    secrets.mkdir()
    (secrets / "dbconfig.json").write_text("{}")
    (secrets / "dbconfig.json").chmod(0o600)
    assert static(build(tmp_path, {"default": pg(sslmode="disable")})) == []


def test_route_to_an_unknown_alias_is_an_error(tmp_path: Path) -> None:
    databases = build(tmp_path, {"default": pg(sslmode="disable")})
    with override_settings(DBCONFIG_ROUTES={"reports": "analytics"}):
        assert static(databases) == [
            ("dbconfig.E001", 'The route "reports" goes to "analytics", which is not in DATABASES.')
        ]
        with using_databases(databases), pytest.raises(SystemCheckError, match="dbconfig.E001"):
            call_command("check", stdout=io.StringIO(), stderr=io.StringIO())


def test_static_checks_open_no_connection(tmp_path: Path, hung_server: HungServer) -> None:
    databases = build(tmp_path, {"default": pg(host=hung_server.host, port=hung_server.port)})
    static(databases)
    assert hung_server.accepted == 0


def test_live_checks_run_only_for_the_databases_asked(tmp_path: Path, hung_server: HungServer) -> None:
    databases = build(
        tmp_path, {"default": pg(host=hung_server.host, port=hung_server.port, connect_timeout="2s")}
    )
    with using_databases(databases):
        assert checks.check_live(databases=None) == []
        messages = checks.check_live(databases=["default"])
    assert [(type(m), m.id) for m in messages] == [(Error, "dbconfig.E102")]
    assert (
        messages[0].msg
        == 'Database "default": No answer within 2 s: ConnectionTimeout: connection timeout expired'
    )

    assert PASSWORD not in messages[0].msg


def test_check_database_runs_the_live_checks(tmp_path: Path, shared_postgres: dict[str, Any]) -> None:
    databases = build(
        tmp_path,
        {
            "default": {
                "backend": "postgresql",
                "host": shared_postgres["host"],
                "port": shared_postgres["port"],
                "name": shared_postgres["dbname"],
                "user": shared_postgres["user"],
                "statement_timeout": "30s",
            }
        },
    )
    # settings.py overriding what build_databases() rendered: libpq applies the last -c.
    databases["default"]["OPTIONS"]["options"] += " -c statement_timeout=5s"
    with using_databases(databases):
        assert checks.check_live(databases=["default"]) == [
            Error(
                'Database "default": statement_timeout is 5s on the server, but 30s is configured.',
                hint=problems.HINTS[problems.E109].format(setting="statement_timeout", alias="default"),
                id="dbconfig.E109",
            )
        ]
        with pytest.raises(SystemCheckError, match="dbconfig.E109"):
            call_command("check", "--database", "default", stdout=io.StringIO(), stderr=io.StringIO())
        call_command("check", stdout=io.StringIO())  # no --database: nothing live


def test_every_id_has_an_instruction_and_a_line_in_the_docs() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "checks.md").read_text()
    for check_id, hint in problems.HINTS.items():
        assert hint and check_id in docs, check_id
        assert (Warning if ".W" in check_id else Error).__name__
