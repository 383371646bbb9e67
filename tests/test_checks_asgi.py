"""dbconfig.W006: PostgreSQL aliases whose ASGI requests each open a connection, in a project served by ASGI."""

from __future__ import annotations

import io
import sys
import types
from pathlib import Path
from typing import Any

import django
import pytest
from django.core.management import call_command
from django.test import override_settings

from tests.test_checks import build, pg, static


@pytest.mark.skipif(django.VERSION < (5, 1), reason="pool true and the ASGI pool need Django 5.1")
def test_asgi_warns_only_for_aliases_whose_requests_each_open_a_connection(tmp_path: Path) -> None:
    databases = build(
        tmp_path,
        {
            "default": pg(sslmode="disable"),  # pool "asgi", the default: pooled
            "pooled": pg(sslmode="disable", pool=True),
            "unpooled": pg(sslmode="disable", pool=False),
            "per_request": pg(sslmode="disable", pool=False, conn_max_age=0),
            "mysql": {"backend": "mariadb", "host": "127.0.0.1", "name": "app"},
            "local": {"backend": "sqlite", "name": "db.sqlite3"},
        },
    )
    with override_settings(ASGI_APPLICATION="project.asgi.application"):
        found = static(databases)
    assert found == [
        (
            "dbconfig.W006",
            '"unpooled" keeps connections for 60 s without a pool, and the project is served by ASGI '
            "(ASGI_APPLICATION is set): no request reuses another's connection, so each opens its own.",
        ),
    ]


@pytest.mark.skipif(django.VERSION < (5, 1), reason="Django before 5.1 is the first thing missing")
def test_asgi_warns_where_the_default_pool_cannot_be_had(tmp_path: Path, monkeypatch: Any) -> None:
    databases = build(tmp_path, {"default": pg(sslmode="disable")})
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)  # as if not installed
    with override_settings(ASGI_APPLICATION="project.asgi.application"):
        found = static(databases)
    assert found == [
        (
            "dbconfig.W006",
            '"default" has pool "asgi", but this process cannot pool: it needs psycopg_pool. The project '
            "is served by ASGI (ASGI_APPLICATION is set): each request opens its own connection.",
        ),
    ]


def test_the_hint_says_what_to_do(tmp_path: Path, monkeypatch: Any) -> None:
    databases = build(
        tmp_path, {"default": pg(sslmode="disable"), "unpooled": pg(sslmode="disable", pool=False)}
    )
    from django_dbconfig import checks
    from tests.test_dbcheck import using_databases

    monkeypatch.setattr(django, "VERSION", (4, 2, 0, "final", 0))
    with using_databases(databases), override_settings(ASGI_APPLICATION="p.asgi.application"):
        hints = [m.hint for m in checks.check_configuration()]
    assert hints == [
        "Upgrade Django to 5.1 or later.",
        'Remove pool: false from "unpooled" (its default pools ASGI requests\' connections).',
    ]


def test_an_asgi_server_running_the_checks_counts_as_asgi(tmp_path: Path, monkeypatch: Any) -> None:
    databases = build(tmp_path, {"default": pg(sslmode="disable", pool=False)})
    monkeypatch.setitem(sys.modules, "uvicorn", types.ModuleType("uvicorn"))
    assert [m for m, _ in static(databases)] == ["dbconfig.W006"]
    assert "(uvicorn runs this process)" in static(databases)[0][1]


def test_wsgi_projects_get_no_asgi_warning(tmp_path: Path) -> None:
    databases = build(tmp_path, {"default": pg(sslmode="disable", pool=False)})
    with override_settings(WSGI_APPLICATION="project.wsgi.application"):
        assert static(databases) == []


def test_manage_py_check_shows_the_warning(tmp_path: Path) -> None:
    from tests.test_dbcheck import using_databases

    databases = build(tmp_path, {"default": pg(sslmode="disable", pool=False)})
    out = io.StringIO()
    with using_databases(databases), override_settings(ASGI_APPLICATION="p.asgi.application"):
        call_command("check", stdout=out, stderr=out)
    assert "dbconfig.W006" in out.getvalue()


@pytest.mark.parametrize(
    ("version", "missing", "lacks"),
    [
        ((5, 0), None, ("Django 5.1 or later (no pool before)", "Upgrade Django to 5.1 or later.")),
        (
            (5, 1),
            "psycopg",
            (
                "psycopg 3 (Django pools with it only)",
                'Install it: pip install "django-dbconfig[postgresql]".',
            ),
        ),
        ((5, 1), "psycopg_pool", ("psycopg_pool", 'Install it: pip install "django-dbconfig[postgresql]".')),
        ((5, 1), None, None),
    ],
)
def test_what_the_asgi_pool_lacks_and_how_to_get_it(
    monkeypatch: Any, version: tuple[int, int], missing: str | None, lacks: Any
) -> None:
    from django_dbconfig.backends.postgresql.settings import asgi_pool_missing

    if missing is not None:
        monkeypatch.setitem(sys.modules, missing, None)  # as if not installed
    assert asgi_pool_missing(version) == lacks
