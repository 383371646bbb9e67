"""Runtime databases on a throwaway PostgreSQL server: provisioning, removal, reuse of a name, pools, health."""

from __future__ import annotations

import gc
import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.core.signals import request_finished, request_started
from django.db import OperationalError, connections, transaction

from django_dbconfig import add_database, check_databases, remove_database
from tests.apps.shop.models import Order
from tests.servers import PostgresServer

pytestmark = pytest.mark.postgresql


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def server(pg_plain_server: PostgresServer, built_config: Callable[[dict[str, Any]], Any]) -> PostgresServer:
    """The throwaway server as the project's `default` alias (role app, database app)."""
    built_config(
        {"databases": {"default": {"url": pg_plain_server.url(), "sslmode": "disable", "conn_max_age": 60}}}
    )
    return pg_plain_server


@pytest.fixture
def tenant_database(server: PostgresServer) -> Iterator[str]:
    """A database owned by the app role, dropped (without FORCE) after the test."""
    name = unique("tenant")
    server.psql(f"CREATE DATABASE {name} OWNER app", dbname="postgres")
    yield name
    server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", dbname="postgres")


def sessions(server: PostgresServer, **where: str) -> int:
    (column, value) = next(iter(where.items()))
    rows = server.psql(
        f"SELECT count(*) FROM pg_stat_activity WHERE {column} = %s AND pid <> pg_backend_pid()",
        [value],
        dbname="postgres",
    )
    return int(rows[0][0])


def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def current_database(alias: str) -> str:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT current_database()")
        return str(cursor.fetchone()[0])


def test_a_tenant_is_checked_given_its_schema_migrated_and_used(server: PostgresServer) -> None:
    """The provisioning flow: check (schema missing), create the schema, migrate --database, use it."""
    schema = unique("Tenant")  # capitals: the search_path must quote it
    add_database("tenant_42", {"search_path": [schema]}, like="default")
    try:
        report = check_databases(["tenant_42"])
        assert report["ok"] is False
        (found,) = report["databases"]
        assert found["schemas"] == {"expected": [schema], "missing": [schema], "created": []}

        # The same report as `dbcheck --format json`, as Python data (latency aside).
        out = io.StringIO()
        with pytest.raises(CommandError):
            call_command("dbcheck", "--database", "tenant_42", "--format", "json", stdout=out)
        printed = json.loads(out.getvalue())
        for document in (printed, report):
            for database in document["databases"]:
                database["latency_ms"] = None
        assert printed == report

        created = check_databases(["tenant_42"], create_schemas=True)
        assert created["databases"][0]["schemas"]["created"] == [schema]
        assert created["ok"] is True

        call_command("migrate", "shop", database="tenant_42", verbosity=0)
        Order.objects.using("tenant_42").create(reference="in the tenant")
        with pytest.raises(RuntimeError), transaction.atomic(using="tenant_42"):
            Order.objects.using("tenant_42").create(reference="rolled back")
            raise RuntimeError
        rows = server.psql(f'SELECT reference FROM "{schema}".shop_order', dbname="app")
        assert rows == [("in the tenant",)]
        tables = server.psql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
            [schema],
            dbname="app",
        )
        assert [name for (name,) in tables] == ["django_migrations", "shop_customer", "shop_order"]
    finally:
        remove_database("tenant_42")
        server.psql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE', dbname="app")


def test_removal_closes_the_sessions_of_every_thread_so_the_database_can_be_dropped(
    server: PostgresServer, tenant_database: str
) -> None:
    """Idle persistent sessions in 4 worker threads and one busy in a query: all end at removal."""
    name = tenant_database
    add_database("tenant", {"name": name, "conn_max_age": 600}, like="default")
    gc.disable()  # the sessions must end without the garbage collector's help
    try:
        arrived = threading.Barrier(4)

        def use_and_stay() -> str:
            database = current_database("tenant")
            arrived.wait(timeout=30)  # four threads at once, each with its own connection object
            return database

        def busy() -> None:
            with connections["tenant"].cursor() as cursor:
                cursor.execute("SELECT pg_sleep(60)")

        with ThreadPoolExecutor(max_workers=4) as idle, ThreadPoolExecutor(max_workers=1) as other:
            assert [f.result(timeout=30) for f in [idle.submit(use_and_stay) for _ in range(4)]] == [name] * 4
            sleeping = other.submit(busy)
            assert wait_for(lambda: sessions(server, datname=name) == 5)
            # The busy thread past connecting, inside its query: a removal while a thread still
            # connects is another case (its connect then fails, naming the removal).
            assert wait_for(lambda: sessions(server, query="SELECT pg_sleep(60)") == 1)

            started = time.monotonic()
            remove_database("tenant")
            assert wait_for(lambda: sessions(server, datname=name) == 0, seconds=5)
            with pytest.raises(OperationalError):
                sleeping.result(timeout=10)
            assert time.monotonic() - started < 10
            # Deprovisioning: no session is left, so a plain DROP DATABASE succeeds.
            server.psql(f"DROP DATABASE {name}", dbname="postgres")
    finally:
        gc.enable()


def test_a_name_added_again_with_another_database_uses_it_in_every_thread(
    server: PostgresServer, tenant_database: str
) -> None:
    with ThreadPoolExecutor(max_workers=1) as worker:
        add_database("tenant", {}, like="default")
        assert worker.submit(current_database, "tenant").result(timeout=30) == "app"
        remove_database("tenant")
        add_database("tenant", {"name": tenant_database}, like="default")
        assert worker.submit(current_database, "tenant").result(timeout=30) == tenant_database
        assert current_database("tenant") == tenant_database


@pytest.mark.skipif(django.VERSION < (5, 1), reason="Django has connection pools from 5.1")
def test_removal_closes_and_forgets_the_pool(server: PostgresServer, tenant_database: str) -> None:
    """Django keys pools by alias: a name added again with other settings must not get the old pool."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    add_database(
        "pooled", {"pool": {"min_size": 2, "max_size": 4}, "application_name": "pooled"}, like="default"
    )
    assert current_database("pooled") == "app"
    old_pool = DatabaseWrapper._connection_pools["pooled"]
    assert wait_for(lambda: sessions(server, application_name="pooled") >= 2)  # min_size, or one more
    remove_database("pooled")
    assert "pooled" not in DatabaseWrapper._connection_pools
    assert old_pool.closed
    assert wait_for(lambda: sessions(server, application_name="pooled") == 0, seconds=5)

    add_database(
        "pooled", {"name": tenant_database, "pool": True, "application_name": "pooled"}, like="default"
    )
    assert current_database("pooled") == tenant_database
    remove_database("pooled")
    assert wait_for(lambda: sessions(server, application_name="pooled") == 0, seconds=5)


def test_the_project_engine_and_health_check_serve_a_runtime_alias(server: PostgresServer) -> None:
    """Django's request signals visit runtime aliases: a session killed between requests is replaced."""
    add_database("tenant", {"application_name": "health"}, like="default")
    connection = connections["tenant"]
    assert type(connection).__module__ == "django_dbconfig.backends.postgresql.base"
    request_started.send(sender=None)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        first = cursor.fetchone()[0]
    server.psql("SELECT pg_terminate_backend(%s)", [first], dbname="postgres")
    assert wait_for(lambda: sessions(server, application_name="health") == 0)
    request_started.send(sender=None)  # close_old_connections: the health check runs on first use
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != first


def test_request_end_cleanup_closes_a_runtime_alias_like_a_configured_one(server: PostgresServer) -> None:
    """close_old_connections() at request_finished visits runtime aliases: conn_max_age 0 closes at once."""
    add_database("tenant", {"conn_max_age": 0, "application_name": "request-end"}, like="default")
    request_started.send(sender=None)
    assert current_database("tenant") == "app"
    assert sessions(server, application_name="request-end") == 1
    request_finished.send(sender=None)
    assert connections["tenant"].connection is None
    assert wait_for(lambda: sessions(server, application_name="request-end") == 0, seconds=5)


TENANT_SETTINGS = """\
from pathlib import Path

from tests.settings import *  # noqa: F403

from django_dbconfig import build_databases

INSTALLED_APPS = [*INSTALLED_APPS, "tenants.TenantsConfig"]  # noqa: F405
DATABASES = build_databases(Path(__file__).resolve().parent)
DATABASE_ROUTERS = ["django_dbconfig.routers.DatabaseRouter"]
"""
TENANTS_APP = """\
import json
import os

from django.apps import AppConfig

from django_dbconfig import add_database


class TenantsConfig(AppConfig):
    name = "tenants"

    def ready(self):
        # Long-lived tenants, loaded at startup: every command and request sees them.
        for alias, name in json.loads(os.environ["TENANTS"]).items():
            add_database(alias, {"name": name}, like="default")
"""


def test_a_tenant_loaded_at_startup_is_migrated_and_checked_by_the_commands(
    server: PostgresServer, tenant_database: str, tmp_path: Any
) -> None:
    """`manage.py migrate --database tenant_42` gives the tenant the tables of `default`; dbcheck checks it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    analytics = unique("analytics")
    server.psql(f"CREATE DATABASE {analytics} OWNER app", dbname="postgres")
    try:
        base = {"url": server.url(), "sslmode": "disable", "conn_max_age": 0}
        (tmp_path / "dbconfig.json").write_text(
            json.dumps(
                {
                    "databases": {"default": base, "analytics": {**base, "name": analytics}},
                    "routes": {"reports": "analytics"},
                }
            )
        )
        (tmp_path / "tenant_settings.py").write_text(TENANT_SETTINGS)
        (tmp_path / "tenants.py").write_text(TENANTS_APP)
        root = Path(__file__).resolve().parent.parent
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DBCONFIG_", "PG")) and not key.endswith("DATABASE_URL")
        }
        env |= {
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)]),
            "DJANGO_SETTINGS_MODULE": "tenant_settings",
            "TENANTS": json.dumps({"tenant_42": tenant_database}),
        }

        def manage(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "django", *args],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        migrated = manage("migrate", "--noinput", "-v", "0", "--database", "tenant_42")
        assert migrated.returncode == 0, migrated.stderr
        tables = server.psql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
            dbname=tenant_database,
        )
        names = [name for (name,) in tables]
        assert "shop_order" in names
        assert "auth_user" in names
        assert "reports_dailytotal" not in names  # routed to analytics: not a model of default

        checked = manage("dbcheck", "--database", "tenant_42", "--format", "json")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        report = json.loads(checked.stdout)
        assert [(d["alias"], d["ok"]) for d in report["databases"]] == [("tenant_42", True)]
        assert report["problems"] == []
    finally:
        server.psql(f"DROP DATABASE IF EXISTS {analytics} WITH (FORCE)", dbname="postgres")
