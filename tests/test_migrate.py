"""`migrate` on two PostgreSQL aliases puts each app's tables on its own alias only.

A project like the example one runs in a subprocess: settings.py calls
build_databases() on a dbconfig.json with `default`, `analytics` and a route
`reports -> analytics`, and lists the router by its dotted path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.postgresql

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = """\
from pathlib import Path

from tests.settings import *  # noqa: F403

from django_dbconfig import build_databases

DATABASES = build_databases(Path(__file__).resolve().parent)
DATABASE_ROUTERS = ["django_dbconfig.routers.DatabaseRouter"]
"""


def _admin(postgres: dict[str, Any], sql: str) -> None:
    import psycopg

    with psycopg.connect(**{**postgres, "dbname": "postgres"}, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _tables(postgres: dict[str, Any], dbname: str) -> list[str]:
    import psycopg

    with psycopg.connect(**{**postgres, "dbname": dbname}, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' ORDER BY table_name"
        ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture
def project(tmp_path: Path, shared_postgres: dict[str, Any]) -> Iterator[dict[str, str]]:
    """Two fresh databases on the shared server and a project pointing at them."""
    suffix = uuid.uuid4().hex[:10]
    names = {"default": f"dbconfig_mig_{suffix}_default", "analytics": f"dbconfig_mig_{suffix}_analytics"}
    server = {
        "backend": "postgresql",
        "host": shared_postgres["host"],
        "port": shared_postgres["port"],
        "user": shared_postgres["user"],
        "conn_max_age": 0,
    }
    (tmp_path / "dbconfig.json").write_text(
        json.dumps(
            {
                "databases": {alias: {**server, "name": name} for alias, name in names.items()},
                "routes": {"reports": "analytics"},
            }
        )
    )
    (tmp_path / "migrate_settings.py").write_text(SETTINGS)
    created = []
    try:
        for name in names.values():
            _admin(shared_postgres, f'CREATE DATABASE "{name}"')
            created.append(name)
        yield names
    finally:
        for name in created:
            _admin(shared_postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(tmp_path: Path, *args: str) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DBCONFIG_", "PG")) and not key.endswith("DATABASE_URL")
    }
    env |= {
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "migrate_settings",
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_each_alias_gets_only_its_own_apps_tables(
    tmp_path: Path, project: dict[str, str], shared_postgres: dict[str, Any]
) -> None:
    migrate(tmp_path)
    migrate(tmp_path, "--database", "analytics")
    assert _tables(shared_postgres, project["default"]) == [
        "auth_group",
        "auth_group_permissions",
        "auth_permission",
        "auth_user",
        "auth_user_groups",
        "auth_user_user_permissions",
        "django_content_type",
        "django_migrations",
        "shop_customer",
        "shop_order",
    ]
    assert _tables(shared_postgres, project["analytics"]) == ["django_migrations", "reports_dailytotal"]
