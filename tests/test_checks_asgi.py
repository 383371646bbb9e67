"""dbconfig.W006: persistent connections without a pool in a project served by ASGI."""

from __future__ import annotations

import io
import sys
import types
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.test import override_settings

from tests.test_checks import build, pg, static


def test_asgi_application_with_persistent_connections_warns_per_server_alias(tmp_path: Path) -> None:
    databases = build(
        tmp_path,
        {
            "default": pg(sslmode="disable"),
            "pooled": pg(sslmode="disable", pool=True),
            "per_request": pg(sslmode="disable", conn_max_age=0),
            "mysql": {"backend": "mariadb", "host": "127.0.0.1", "name": "app"},
            "local": {"backend": "sqlite", "name": "db.sqlite3"},
        },
    )
    with override_settings(ASGI_APPLICATION="project.asgi.application"):
        found = static(databases)
    assert found == [
        (
            "dbconfig.W006",
            '"default" keeps connections for 60 s without a pool, and the project is served by ASGI '
            "(ASGI_APPLICATION is set): no request reuses another's connection, so each opens its own.",
        ),
        (
            "dbconfig.W006",
            '"mysql" keeps connections for 60 s without a pool, and the project is served by ASGI '
            "(ASGI_APPLICATION is set): no request reuses another's connection, so each opens its own.",
        ),
    ]


def test_the_hint_says_what_to_set_for_each_backend(tmp_path: Path) -> None:
    databases = build(
        tmp_path,
        {
            "default": pg(sslmode="disable"),
            "mysql": {"backend": "mariadb", "host": "127.0.0.1", "name": "app"},
        },
    )
    from django_dbconfig import checks
    from tests.test_dbcheck import using_databases

    with using_databases(databases), override_settings(ASGI_APPLICATION="p.asgi.application"):
        hints = [m.hint for m in checks.check_configuration()]
    assert hints == [
        'Set pool to true for "default" (pip install django-dbconfig[pool]), or conn_max_age to 0.',
        'Set conn_max_age for "mysql" to 0, or put a connection pooler (ProxySQL, MaxScale) in front '
        "of its server.",
    ]


def test_an_asgi_server_running_the_checks_counts_as_asgi(tmp_path: Path, monkeypatch: Any) -> None:
    databases = build(tmp_path, {"default": pg(sslmode="disable")})
    monkeypatch.setitem(sys.modules, "uvicorn", types.ModuleType("uvicorn"))
    assert [m for m, _ in static(databases)] == ["dbconfig.W006"]
    assert "(uvicorn runs this process)" in static(databases)[0][1]


def test_wsgi_projects_get_no_asgi_warning(tmp_path: Path) -> None:
    databases = build(tmp_path, {"default": pg(sslmode="disable")})
    with override_settings(WSGI_APPLICATION="project.wsgi.application"):
        assert static(databases) == []


def test_manage_py_check_shows_the_warning(tmp_path: Path) -> None:
    from tests.test_dbcheck import using_databases

    databases = build(tmp_path, {"default": pg(sslmode="disable")})
    out = io.StringIO()
    with using_databases(databases), override_settings(ASGI_APPLICATION="p.asgi.application"):
        call_command("check", stdout=out, stderr=out)
    assert "dbconfig.W006" in out.getvalue()
