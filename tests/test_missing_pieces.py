"""`manage.py check` finds a missing driver (E002) and pool without psycopg_pool (E003).

The modules are hidden, not uninstalled: the example project's manage.py runs in a
subprocess whose sys.modules maps them to None, which makes Python (and find_spec)
treat them as absent.

Django loads the `default` alias's backend while it imports the models (every model
asks `connection.ops` for the longest table name), before any check runs. So a missing
driver of `default` stops `manage.py` itself, with the engine's message and the install
command; E002 is for the other aliases. Django 6.1's field checks also load the backend of
every alias a model may migrate on, so the E002 cases use an alias no model migrates on
(`legacy`, declared by a variable), which every Django version leaves to our checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import needs_django_pool
from tests.test_example_project import EXAMPLE

RUN_HIDDEN = """
import runpy, sys
for name in sys.argv[1].split(","):
    if name:
        sys.modules[name] = None
sys.argv = ["manage.py", *sys.argv[2:]]
runpy.run_path("manage.py", run_name="__main__")
"""


@pytest.fixture
def example(tmp_path: Path) -> Path:
    copy = tmp_path / "example_project"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("*.sqlite3", "__pycache__"))
    return copy


def check_hiding(project: Path, hidden: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DBCONFIG_") and not k.endswith("DATABASE_URL") and k != "DJANGO_SETTINGS_MODULE"
    }
    return subprocess.run(
        [sys.executable, "-c", RUN_HIDDEN, ",".join(hidden), "check"],
        cwd=project,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


POSTGRES = {"DATABASE_URL": "postgresql://app@localhost/app", "ANALYTICS_DATABASE_URL": "sqlite:///a.db"}
MYSQL = {"DATABASE_URL": "mysql://app@localhost/app", "ANALYTICS_DATABASE_URL": "sqlite:///a.db"}
# default on PostgreSQL with a pool; a `legacy` alias, on which no model migrates, on MySQL.
POOL_AND_MYSQL = {
    "DATABASE_URL": "postgresql://app@localhost/app",
    "DBCONFIG_DEFAULT_POOL": "true",
    "ANALYTICS_DATABASE_URL": "sqlite:///a.db",
    "DBCONFIG_LEGACY_URL": "mysql://app@localhost/app",
}


@needs_django_pool
def test_with_every_piece_installed_check_passes(example: Path) -> None:
    result = check_hiding(example, [], POOL_AND_MYSQL)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


@needs_django_pool
def test_pool_without_psycopg_pool_is_e003_and_a_missing_driver_e002(example: Path) -> None:
    result = check_hiding(example, ["psycopg_pool", "MySQLdb"], POOL_AND_MYSQL)
    assert result.returncode == 1
    assert result.stderr.splitlines()[:2] == [
        "SystemCheckError: System check identified some issues:",
        "",
    ]
    assert result.stderr.split("ERRORS:\n")[1].split("\n\nSystem check")[0].splitlines() == [
        '?: (dbconfig.E002) "legacy" needs the mysql driver (MySQLdb), which is not installed.',
        '\tHINT: Install the driver: pip install "django-dbconfig[mysql]" (mysqlclient)',
        '?: (dbconfig.E003) "default" has pool set, but psycopg_pool is not installed: the first query '
        "would fail.",
        '\tHINT: Install the pool: pip install "django-dbconfig[pool]" (psycopg_pool), or remove pool from '
        '"default".',
    ]


def test_a_missing_postgresql_driver_is_e002(example: Path) -> None:
    env = {"DBCONFIG_LEGACY_URL": "postgresql://app@localhost/app"}
    result = check_hiding(example, ["psycopg", "psycopg2"], env)
    assert result.returncode == 1
    assert (
        '?: (dbconfig.E002) "legacy" needs the postgresql driver (psycopg or psycopg2), which is not '
        'installed.\n\tHINT: Install the driver: pip install "django-dbconfig[postgresql]" (psycopg 3)'
    ) in result.stderr


@pytest.mark.parametrize(
    ("hidden", "env", "last_line"),
    [
        (
            ["psycopg", "psycopg2"],
            POSTGRES,
            "django.core.exceptions.ImproperlyConfigured: The PostgreSQL driver (psycopg or psycopg2) is not "
            'installed. Install it: pip install "django-dbconfig[postgresql]" (psycopg 3)',
        ),
        (
            ["MySQLdb"],
            MYSQL,
            "django.core.exceptions.ImproperlyConfigured: The MySQL driver (MySQLdb) is not installed. "
            'Install it: pip install "django-dbconfig[mysql]" (mysqlclient)',
        ),
    ],
)
def test_a_missing_driver_of_default_stops_manage_py_with_the_install_command(
    example: Path, hidden: list[str], env: dict[str, str], last_line: str
) -> None:
    result = check_hiding(example, hidden, env)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == last_line
