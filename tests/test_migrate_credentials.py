"""`migrate` keys: `manage.py migrate` connects as the owner while requests keep a role
with no DDL rights, and a `read_only` alias migrates without being edited.

Each test makes throwaway databases and roles (unique names) on the shared PostgreSQL
and MariaDB servers, runs `migrate` in a subprocess like a deployment would, and asks
the servers who owns what was created.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db.utils import DatabaseError

from django_dbconfig import build_databases
from django_dbconfig.core.errors import DbConfigError
from django_dbconfig.operations.admin import admin_settings
from tests.conftest import django_connection
from tests.helpers import needs_django_pool

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = """\
from pathlib import Path

from tests.settings import *  # noqa: F403

from django_dbconfig import build_databases

DATABASES = build_databases(Path(__file__).resolve().parent)
DATABASE_ROUTERS = ["django_dbconfig.routers.DatabaseRouter"]
"""


def manage(root: Path, *args: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DBCONFIG_", "PG")) and not key.endswith("DATABASE_URL")
    }
    env |= {
        "PYTHONPATH": os.pathsep.join([str(root), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "project_settings",
        **(environ or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


class Server:
    """Throwaway databases and roles on one shared server, dropped afterwards."""

    def __init__(self, vendor: str, admin: Callable[..., list[tuple[Any, ...]]]) -> None:
        self.vendor = vendor
        self.admin = admin
        suffix = uuid.uuid4().hex[:8]
        self.owner, self.runtime = f"dbcfg_own_{suffix}", f"dbcfg_run_{suffix}"
        self.owner_password = f"owner-pw-{suffix}"
        self.runtime_password = f"runtime-pw-{suffix}"
        self.databases = {alias: f"dbcfg_mig_{suffix}_{alias}" for alias in ("default", "analytics")}


def pg_server(postgres: dict[str, Any]) -> Server:
    import psycopg

    def admin(sql: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        with psycopg.connect(**{**postgres, "dbname": dbname}, autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    server = Server("postgresql", admin)
    admin(f"CREATE ROLE {server.owner} LOGIN PASSWORD '{server.owner_password}'")
    admin(f"CREATE ROLE {server.runtime} LOGIN PASSWORD '{server.runtime_password}'")
    for name in server.databases.values():
        admin(f"CREATE DATABASE {name} OWNER {server.owner}")
        # PostgreSQL 15: only the database owner may create in schema public. The runtime
        # role reads and writes the owner's tables, and creates nothing.
        admin(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {server.owner} IN SCHEMA public "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {server.runtime}; "
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {server.owner} IN SCHEMA public "
            f"GRANT USAGE, SELECT ON SEQUENCES TO {server.runtime}",
            dbname=name,
        )
    return server


def pg_drop(server: Server) -> None:
    for name in server.databases.values():
        server.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    for role in (server.owner, server.runtime):
        server.admin(f"DROP ROLE IF EXISTS {role}")


def mariadb_server(mariadb: dict[str, Any]) -> Server:
    import MySQLdb

    def admin(sql: str) -> list[tuple[Any, ...]]:
        conn = MySQLdb.connect(**mariadb, connect_timeout=5)
        try:
            cursor = conn.cursor()
            cursor.execute(sql)
            return list(cursor.fetchall()) if cursor.description else []
        finally:
            conn.close()

    server = Server("mariadb", admin)
    admin(f"CREATE USER '{server.owner}'@'%' IDENTIFIED BY '{server.owner_password}'")
    admin(f"CREATE USER '{server.runtime}'@'%' IDENTIFIED BY '{server.runtime_password}'")
    for name in server.databases.values():
        admin(f"CREATE DATABASE {name}")
        admin(f"GRANT ALL ON {name}.* TO '{server.owner}'@'%'")
        admin(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {name}.* TO '{server.runtime}'@'%'")
    return server


def mariadb_drop(server: Server) -> None:
    for name in server.databases.values():
        server.admin(f"DROP DATABASE IF EXISTS {name}")
    for user in (server.owner, server.runtime):
        server.admin(f"DROP USER IF EXISTS '{user}'@'%'")


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    if request.param == "postgresql":
        made = pg_server(request.getfixturevalue("shared_postgres"))
        try:
            yield made
        finally:
            pg_drop(made)
    else:
        made = mariadb_server(request.getfixturevalue("shared_mariadb"))
        try:
            yield made
        finally:
            mariadb_drop(made)


def write_project(root: Path, server: Server, *, migrate_keys: bool = True) -> None:
    port = 5432 if server.vendor == "postgresql" else 3306
    connection = {
        "backend": server.vendor,
        "host": "127.0.0.1",
        "port": port,
        "user": server.runtime,
        "conn_max_age": 0,
    }
    (root / "dbconfig.json").write_text(
        json.dumps(
            {
                "databases": {
                    "default": {**connection, "name": server.databases["default"]},
                    "analytics": {**connection, "name": server.databases["analytics"], "read_only": True},
                },
                "routes": {"reports": "analytics"},
            }
        )
    )
    secrets = {f"databases.{alias}.password": server.runtime_password for alias in server.databases}
    if migrate_keys:
        for alias in server.databases:
            secrets[f"databases.{alias}.migrate"] = {"user": server.owner, "password": server.owner_password}
    (root / ".secrets").mkdir(exist_ok=True)
    (root / ".secrets" / "dbconfig.json").write_text(json.dumps(secrets))
    (root / ".secrets" / "dbconfig.json").chmod(0o600)
    (root / "project_settings.py").write_text(SETTINGS)


def owners(server: Server, alias: str) -> dict[str, str]:
    """Each table of the alias's database and the role that owns it (on MariaDB: that exists)."""
    name = server.databases[alias]
    if server.vendor == "postgresql":
        rows = server.admin(
            "SELECT tablename, tableowner::text FROM pg_tables WHERE schemaname = 'public'", dbname=name
        )
        return dict(rows)
    rows = server.admin(
        f"SELECT table_name, 'exists' FROM information_schema.tables WHERE table_schema = '{name}'"
    )
    return dict(rows)


def test_migrate_uses_the_migrate_keys_and_requests_keep_the_runtime_role(
    tmp_path: Path, server: Server
) -> None:
    write_project(tmp_path, server)
    for args in ((), ("--database", "analytics")):
        result = manage(tmp_path, "migrate", "--noinput", "-v", "0", *args)
        assert result.returncode == 0, result.stderr

    analytics = owners(server, "analytics")
    assert sorted(analytics) == ["django_migrations", "reports_dailytotal"]
    assert "shop_order" in owners(server, "default")
    if server.vendor == "postgresql":
        assert set(analytics.values()) == {server.owner}
        assert set(owners(server, "default").values()) == {server.owner}

    databases = build_databases(tmp_path, environ={})
    assert databases["analytics"]["USER"] == server.runtime  # requests never see the owner
    # The request path: the read-only alias still refuses a write, and the runtime role has no DDL rights.
    with django_connection(dict(databases["analytics"])) as connection:
        with pytest.raises(DatabaseError, match="(?i)read.only"):
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO reports_dailytotal (day, total) VALUES ('2024-01-01', 1)")
    with django_connection(dict(databases["default"])) as connection:
        with pytest.raises(DatabaseError, match="(?i)permission denied|denied to user"):
            with connection.cursor() as cursor:
                cursor.execute("CREATE TABLE dbcfg_ddl_probe (id integer)")
        with connection.cursor() as cursor:  # but it reads and writes the owner's tables
            cursor.execute("INSERT INTO shop_customer (name) VALUES ('ada')")
            cursor.execute("SELECT count(*) FROM shop_customer")
            assert cursor.fetchone()[0] == 1


@pytest.mark.postgresql
def test_first_migrate_of_a_read_only_alias_ends_in_a_clear_error_not_a_traceback(
    tmp_path: Path, shared_postgres: dict[str, Any]
) -> None:
    server = pg_server(shared_postgres)
    try:
        write_project(tmp_path, server, migrate_keys=False)
        result = manage(tmp_path, "migrate", "--noinput", "-v", "0", "--database", "analytics")
    finally:
        pg_drop(server)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "migrate --database analytics: Unable to create the django_migrations table" in result.stderr
    assert "DBCONFIG_ANALYTICS_MIGRATE_USER and DBCONFIG_ANALYTICS_MIGRATE_PASSWORD" in result.stderr
    assert server.runtime_password not in result.stderr


@pytest.mark.postgresql
def test_a_read_only_alias_migrates_with_one_command_when_its_user_may(
    tmp_path: Path, shared_postgres: dict[str, Any]
) -> None:
    """No migrate keys, a user with DDL rights: migrate drops read_only for its own connection."""
    name = f"dbcfg_ro_{uuid.uuid4().hex[:8]}"
    server = pg_server(shared_postgres)
    server.admin(f"CREATE DATABASE {name}")
    try:
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        (tmp_path / "dbconfig.json").write_text(
            json.dumps({"databases": {"default": {"url": url, "read_only": True, "conn_max_age": 0}}})
        )
        (tmp_path / "project_settings.py").write_text(SETTINGS)
        result = manage(tmp_path, "migrate", "--noinput", "-v", "0")
        tables = server.admin("SELECT count(*) FROM pg_tables WHERE tablename = 'shop_order'", dbname=name)
    finally:
        server.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        pg_drop(server)
    assert result.returncode == 0, result.stderr
    assert tables == [(1,)]


# ------------------------------------------------------------------ configuration (no server)


def test_dbconfig_shows_the_migrate_keys_masked_with_their_sources(project: Any) -> None:
    project.write_config(
        {"databases": {"default": {"url": "postgresql://web@db.internal/app", "read_only": True}}}
    )
    project.write_secrets(
        {"databases": {"default": {"migrate": {"user": "owner", "password": "owner-secret-pw"}}}}
    )
    build_databases(project.root, environ={"DBCONFIG_DEFAULT_MIGRATE_STATEMENT_TIMEOUT": "10min"})
    out = StringIO()
    call_command("dbconfig", "--format", "json", stdout=out)
    rows = {row["key"]: row for row in json.loads(out.getvalue())["databases"][0]["settings"]}
    assert {key: (rows[key]["value"], rows[key]["source"]) for key in rows if key.startswith("migrate.")} == {
        "migrate.user": ("owner", ".secrets/dbconfig.json: databases.default.migrate.user"),
        "migrate.password": ("********", ".secrets/dbconfig.json: databases.default.migrate.password"),
        "migrate.statement_timeout": ("10min", "DBCONFIG_DEFAULT_MIGRATE_STATEMENT_TIMEOUT"),
    }
    assert "owner-secret-pw" not in out.getvalue()


@needs_django_pool
def test_admin_settings_put_the_migrate_keys_over_the_alias_and_drop_read_only(
    project: Any, settings: Any
) -> None:
    project.write_config(
        {
            "databases": {
                "default": {
                    "url": "postgresql://web:web-pw@db.internal/app",
                    "read_only": True,
                    "statement_timeout": "5s",
                    "pool": True,
                    "migrate": {"user": "owner", "statement_timeout": "10min"},
                }
            }
        }
    )
    databases = build_databases(project.root, environ={})
    from django.db import connections

    saved = connections.settings["default"]
    connections.settings["default"] = dict(databases["default"])
    try:
        admin = admin_settings("default")
    finally:
        connections.settings["default"] = saved
    assert admin is not None
    assert (admin["USER"], "PASSWORD" in admin, admin["CONN_MAX_AGE"]) == ("owner", False, 0)
    assert admin["OPTIONS"]["options"] == "-c statement_timeout=600000ms"
    assert "pool" not in admin["OPTIONS"]
    assert databases["default"]["USER"] == "web"
    assert "default_transaction_read_only=on" in databases["default"]["OPTIONS"]["options"]


@pytest.mark.parametrize(
    ("migrate", "message"),
    [
        (
            {"name": "other"},
            'dbconfig.json: databases.default.migrate (alias "default"): migrate: "name" cannot be set for migrate',
        ),
        ({"port": "x"}, "migrate: port: expected a whole number, got a string."),
        (
            {"password": 5},
            "migrate: password: expected a string (the value is not shown: password is secret).",
        ),
    ],
)
def test_bad_migrate_keys_name_the_source_and_the_allowed_keys(
    project: Any, migrate: Any, message: str
) -> None:
    project.write_config(
        {"databases": {"default": {"backend": "postgresql", "name": "app", "migrate": migrate}}}
    )
    with pytest.raises(DbConfigError) as info:
        project.load()
    assert message in str(info.value)


@pytest.mark.postgresql
def test_dbcheck_create_schemas_uses_the_migrate_keys(
    tmp_path: Path, shared_postgres: dict[str, Any]
) -> None:
    server = pg_server(shared_postgres)
    try:
        write_project(tmp_path, server)
        schema = f"Reports {uuid.uuid4().hex[:6]}"
        config = json.loads((tmp_path / "dbconfig.json").read_text())
        config["databases"]["analytics"]["search_path"] = [schema, "public"]
        (tmp_path / "dbconfig.json").write_text(json.dumps(config))
        result = manage(
            tmp_path, "dbcheck", "--create-schemas", "--database", "analytics", "--format", "json"
        )
        created = server.admin(
            f"SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = '{schema}'",
            dbname=server.databases["analytics"],
        )
    finally:
        pg_drop(server)
    report = json.loads(result.stdout)["databases"][0]
    assert report["schemas"]["created"] == [schema], report["problems"]
    assert created == [(server.owner,)]  # made by the owner, on a read-only alias
    assert report["settings"]["read_only"]["actual"] is True  # the probe itself stays the runtime role's


def test_migrate_keys_come_from_variables_and_their_file_twins(project: Any) -> None:
    project.write_config({"databases": {"analytics": {"url": "postgresql://reporter@warehouse/analytics"}}})
    secret = project.write_file("run/owner-password", "owner-file-pw\n")
    config = project.load(
        {
            "DBCONFIG_ANALYTICS_MIGRATE_USER": "warehouse_owner",
            "DBCONFIG_ANALYTICS_MIGRATE_PASSWORD_FILE": str(secret),
            "DBCONFIG_ANALYTICS_MIGRATE": '{"lock_timeout": "1min"}',
        }
    )
    values = config.values("analytics")
    assert {key: values[key] for key in values if key.startswith("migrate.")} == {
        "migrate.user": "warehouse_owner",
        "migrate.password": "owner-file-pw",
        "migrate.lock_timeout": 60_000,
    }
    rendered = json.dumps(config.databases(), default=str)
    assert "warehouse_owner" not in rendered and "owner-file-pw" not in rendered  # never in DATABASES
    with pytest.raises(DbConfigError) as info:
        project.load({"DBCONFIG_ANALYTICS_MIGRATE_NAME": "other"})
    assert str(info.value).startswith(
        'DBCONFIG_ANALYTICS_MIGRATE_NAME (alias "analytics"): migrate: "name" cannot be set for migrate'
    )
