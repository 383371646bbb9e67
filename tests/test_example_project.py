"""The example project end to end: on SQLite as committed, and on PostgreSQL over verified TLS
in its production profile, with each app's tables on its own alias and analytics read-only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of the example project, so runs leave no database files in the repository."""
    copy = tmp_path / "example_project"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("*.sqlite3", "__pycache__"))
    return copy


def manage(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DBCONFIG_") and not k.endswith("DATABASE_URL") and k != "DJANGO_SETTINGS_MODULE"
    }
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_example_runs_on_sqlite_with_each_app_on_its_alias(example: Path) -> None:
    for alias in ("default", "analytics"):
        assert manage(example, "migrate", "--database", alias, "-v", "0").returncode == 0
    check = manage(example, "dbcheck", "--format", "json")
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    assert [(db["alias"], db["vendor"], db["ok"]) for db in report["databases"]] == [
        ("default", "sqlite", True),
        ("replica", "sqlite", True),
        ("analytics", "sqlite", True),
    ]
    assert report["databases"][0]["settings"]["lock_timeout"] == {
        "expected": "5s",
        "actual": "5s",
        "ok": True,
    }
    import sqlite3

    def tables(name: str) -> set[str]:
        rows = sqlite3.connect(example / name).execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows if row[0].startswith(("shop_", "reports_"))}

    assert tables("db.sqlite3") == {"shop_product", "shop_order"}
    assert tables("analytics.sqlite3") == {"reports_dailysales"}


@pytest.mark.postgresql
@pytest.mark.slow
def test_example_production_profile_on_postgresql_over_verified_tls(
    example: Path, pg_tls_server: Any, pg_tls_standby: Any, tls_ca: Any
) -> None:
    server = pg_tls_server
    database = f"analytics_{os.getpid()}"
    server.psql(f'CREATE DATABASE "{database}" OWNER app')
    try:
        env = {
            "DBCONFIG_ENV": "production",
            "DBCONFIG_DEFAULT_HOST": "localhost",  # the certificate's name: verify-full checks it
            "DBCONFIG_DEFAULT_PORT": str(server.port),
            "DBCONFIG_DEFAULT_NAME": server.dbname,
            "DBCONFIG_DEFAULT_USER": server.user,
            "DBCONFIG_DEFAULT_PASSWORD": server.password,
            "DBCONFIG_DEFAULT_SSLROOTCERT": str(tls_ca.ca_path),
            "ANALYTICS_DATABASE_URL": f"postgresql://{server.user}:{server.password}@localhost:{server.port}/{database}",
            "DBCONFIG_ANALYTICS_SSLROOTCERT": str(tls_ca.ca_path),
            # The replica names only where it is: it inherits the rest from default.
            "DBCONFIG_REPLICA_HOST": "localhost",
            "DBCONFIG_REPLICA_PORT": str(pg_tls_standby.port),
        }
        # The shop schema of the search path does not exist yet: dbcheck says so, then creates it.
        first = manage(example, "dbcheck", "--format", "json", env=env)
        assert first.returncode == 1
        assert json.loads(first.stdout)["databases"][0]["schemas"]["missing"] == ["shop"]
        created = manage(example, "dbcheck", "--create-schemas", "--format", "json", env=env)
        assert json.loads(created.stdout)["databases"][0]["schemas"]["created"] == ["shop"]

        assert manage(example, "migrate", "--database", "default", "-v", "0", env=env).returncode == 0
        # analytics is read-only at the server, yet migrates as it is: migrate's own connection is not.
        migrated = manage(example, "migrate", "--database", "analytics", "-v", "0", env=env)
        assert migrated.returncode == 0, migrated.stderr

        check = manage(example, "dbcheck", "--format", "json", env=env)
        assert check.returncode == 0, check.stdout + check.stderr
        assert server.password not in check.stdout + check.stderr
        report = {db["alias"]: db for db in json.loads(check.stdout)["databases"]}
        for alias in ("default", "replica", "analytics"):
            assert report[alias]["vendor"] == "postgresql"
            assert (report[alias]["tls"]["in_use"], report[alias]["tls"]["verified"]) == (True, True)
        assert report["replica"]["schemas"]["expected"] == ["shop", "public"]
        assert report["replica"]["server"]["role"] == "standby"
        assert report["replica"]["replication"]["standby"] is True
        assert report["replica"]["settings"]["read_only"]["actual"] is True

        # A routed read goes to the replica, which finds the shop's table through its inherited search_path.
        read = manage(
            example,
            "shell",
            "-c",
            "import time; from shop.models import Product\n"
            "for _ in range(100):\n"
            "    try:\n"
            "        print(Product.objects.all().db, Product.objects.count()); break\n"
            "    except Exception as exc:\n"
            "        time.sleep(0.1)\n",
            env=env,
        )
        assert read.stdout.strip().splitlines()[-1:] == ["replica 0"], read.stdout + read.stderr
        assert report["analytics"]["settings"]["read_only"]["actual"] in ("on", "true", True)
        assert report["default"]["settings"]["statement_timeout"]["actual"] == "30s"
        assert report["analytics"]["settings"]["statement_timeout"]["actual"] == "5min"

        # Each app's tables are on its own alias, in the schema its search path names first.
        assert server.psql(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_name LIKE 'shop\\_%' OR table_name LIKE 'reports\\_%' ORDER BY 1"
        ) == [("shop.shop_order",), ("shop.shop_product",)]
        assert server.psql(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'reports\\_%' "
            "OR table_name LIKE 'shop\\_%'",
            dbname=database,
        ) == [("reports_dailysales",)]

        shown = manage(example, "dbconfig", "--database", "default", env=env)
        assert server.password not in shown.stdout
        assert "DBCONFIG_DEFAULT_PASSWORD" in shown.stdout
    finally:
        server.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
