"""Adopting django-dbconfig in a project shaped like a real one, end to end.

The project's settings.py picks its database from its own variables (DB, DB_HOST, DB_PASSWORD,
...): a SQLite base with driver options, PostgreSQL and MariaDB variants. It is exported with
`dbconfig --export`, its profiles refer to the same variables (`${DB_HOST}`), and then
`check`, `dbcheck` and a query run against each real server.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_export import run

pytestmark = [pytest.mark.postgresql, pytest.mark.mariadb]

# The settings a project had before: its own variable names, options on the SQLite base.
OWN_SETTINGS = """
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "tests-only"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_dbconfig"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(BASE_DIR / "hc.sqlite"),
        "OPTIONS": {"init_command": "PRAGMA synchronous=NORMAL;", "timeout": 7},
    }
}
db = os.getenv("DB", "sqlite")
if db == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.getenv("DB_HOST", ""),
            "PORT": os.getenv("DB_PORT", ""),
            "NAME": os.getenv("DB_NAME", "hc"),
            "USER": os.getenv("DB_USER", "postgres"),
            "PASSWORD": os.getenv("DB_PASSWORD", ""),
            "CONN_MAX_AGE": int(os.getenv("DB_CONN_MAX_AGE", "0")),
            "OPTIONS": {"sslmode": os.getenv("DB_SSLMODE", "prefer"), "target_session_attrs": "read-write"},
        }
    }
if db == "mysql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": os.getenv("DB_HOST", ""),
            "PORT": os.getenv("DB_PORT", ""),
            "NAME": os.getenv("DB_NAME", "hc"),
            "USER": os.getenv("DB_USER", "root"),
            "PASSWORD": os.getenv("DB_PASSWORD", ""),
            "OPTIONS": {"charset": "utf8mb4"},
        }
    }
"""

ADOPTED_SETTINGS = """
from pathlib import Path

from django_dbconfig import build_databases

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "tests-only"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_dbconfig"]
DATABASES = build_databases(BASE_DIR)
DATABASE_ROUTERS = ["django_dbconfig.routers.DatabaseRouter"]
"""

QUERY = "from django.db import connection; c = connection.cursor(); c.execute('SELECT 1'); print(connection.vendor, c.fetchone()[0])"


@pytest.fixture
def own_users(shared_postgres: dict[str, Any], shared_mariadb: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """A PostgreSQL and a MariaDB user with the same password, as a deployment's DB_PASSWORD."""
    import MySQLdb
    import psycopg

    user, password = f"adopt_{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    with psycopg.connect(**shared_postgres, autocommit=True) as pg:
        pg.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
    maria = MySQLdb.connect(**shared_mariadb)
    with maria.cursor() as cursor:
        cursor.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
        cursor.execute(f"GRANT ALL ON test.* TO '{user}'@'%'")
    try:
        yield user, password
    finally:
        with maria.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        maria.close()
        with psycopg.connect(**shared_postgres, autocommit=True) as pg:
            pg.execute(f"DROP ROLE IF EXISTS {user}")


def test_a_variables_driven_project_adopts_without_renaming_its_variables(
    tmp_path: Path,
    shared_postgres: dict[str, Any],
    shared_mariadb: dict[str, Any],
    own_users: tuple[str, str],
) -> None:
    user, password = own_users
    project = tmp_path / "hc"
    project.mkdir()
    (project / "hc_settings.py").write_text(textwrap.dedent(OWN_SETTINGS))
    settings = {"DJANGO_SETTINGS_MODULE": "hc_settings"}

    # 1. Export the SQLite base, and the PostgreSQL variant to see what its keys become.
    result = run(project, "-m", "django", "dbconfig", "--export", env=settings)
    assert result.returncode == 0, result.stderr
    document = json.loads((project / "dbconfig.json").read_text())
    assert document["databases"]["default"]["options"] == {"init_command": "PRAGMA synchronous=NORMAL;"}
    assert document["databases"]["default"]["lock_timeout"] == "7s"
    pg_env = {
        "DB": "postgres",
        "DB_HOST": shared_postgres["host"],
        "DB_PORT": str(shared_postgres["port"]),
        "DB_NAME": shared_postgres["dbname"],
        "DB_USER": user,
        "DB_PASSWORD": password,
    }
    out = tmp_path / "pg_export"
    result = run(
        project, "-m", "django", "dbconfig", "--export", "--output-dir", str(out), env={**settings, **pg_env}
    )
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr
    pg_keys = json.loads((out / "dbconfig.json").read_text())["databases"]["default"]
    assert "engine" not in pg_keys  # Django's engine became this project's
    assert (pg_keys["backend"], pg_keys["target_session_attrs"]) == ("postgresql", "read-write")

    # 2. Profiles that read the project's own variables, and the switch in settings.py.
    document["environments"] = {
        "postgres": {
            "databases": {
                "default": {
                    "backend": "postgresql",
                    "host": "${DB_HOST}",
                    "port": "${DB_PORT:-5432}",
                    "name": "${DB_NAME}",
                    "user": "${DB_USER}",
                    "password": "${DB_PASSWORD}",
                    "sslmode": "${DB_SSLMODE:-prefer}",
                    "target_session_attrs": "read-write",
                }
            }
        },
        "mysql": {
            "databases": {
                "default": {
                    "backend": "mariadb",
                    "host": "${DB_HOST}",
                    "port": "${DB_PORT:-3306}",
                    "name": "${DB_NAME}",
                    "user": "${DB_USER}",
                    "password": "${DB_PASSWORD}",
                    "options": {"charset": "utf8mb4"},
                }
            }
        },
    }
    (project / "dbconfig.json").write_text(json.dumps(document, indent=2))
    (project / "hc_settings.py").write_text(textwrap.dedent(ADOPTED_SETTINGS))
    maria_env = {
        "DB_HOST": shared_mariadb["host"],
        "DB_PORT": str(shared_mariadb["port"]),
        "DB_NAME": shared_mariadb["database"],
        "DB_USER": user,
        "DB_PASSWORD": password,
    }

    # 3. check, dbcheck and a query on each server; the SQLite options are unused there.
    for profile, variables, backend, vendor in (
        ("postgres", pg_env, "postgresql", "postgresql"),
        ("mysql", maria_env, "mariadb", "mysql"),
    ):
        env = {**settings, **variables, "DBCONFIG_ENV": profile}
        checked = run(project, "-m", "django", "check", env=env)
        assert checked.returncode == 0, checked.stderr
        assert "dbconfig.W014" in checked.stderr + checked.stdout  # the SQLite init_command, named
        verified = run(project, "-m", "django", "dbcheck", "--format", "json", env=env)
        report = json.loads(verified.stdout)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert report["databases"][0]["vendor"] == backend
        shown = run(project, "-m", "django", "dbconfig", "--format", "json", env=env)
        host = next(
            row for row in json.loads(shown.stdout)["databases"][0]["settings"] if row["key"] == "host"
        )
        assert (
            host["source"]
            == f"DB_HOST (referenced in dbconfig.json: environments.{profile}.databases.default.host)"
        )
        queried = run(project, "-m", "django", "shell", "-c", QUERY, env=env)
        assert queried.returncode == 0, queried.stderr
        # The last line is the query's (Django 5.2's shell may first list what it imported).
        assert queried.stdout.split()[-2:] == [vendor, "1"]
        for output in (checked, verified, shown, queried):
            assert password not in output.stdout + output.stderr
