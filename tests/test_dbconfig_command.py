"""manage.py dbconfig: each effective value with its source; secrets masked."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from django_dbconfig import build_databases
from django_dbconfig.conf.config import display_value

SECRET = "app-secret-pw"


@pytest.fixture
def built(project: Any) -> Any:
    project.write_config(
        {
            "defaults": {"statement_timeout": "30s"},
            "databases": {
                "default": {"backend": "postgresql", "host": "db.internal", "name": "app"},
                "analytics": {"url": "postgresql://reporter@warehouse/analytics", "read_only": True},
            },
            "routes": {"reports": "analytics"},
        }
    )
    project.write_secrets({"databases.default.password": SECRET})
    build_databases(
        project.root,
        environ={
            "DBCONFIG_DEFAULT_USER": "web",
            "ANALYTICS_DATABASE_URL": f"postgresql://reporter:{SECRET}@warehouse/analytics?sslmode=require",
        },
        overrides={"databases.default.application_name": "shop"},
    )
    return project


def run(*args: str) -> str:
    out = StringIO()
    call_command("dbconfig", *args, stdout=out, no_color=True)
    return out.getvalue()


def test_text_lists_values_and_sources(built: Any) -> None:
    lines = [line.split() for line in run("--database", "default").splitlines()]
    assert lines == [
        ["default", "(postgresql)"],
        ["backend", "postgresql", "dbconfig.json:", "databases.default.backend"],
        ["host", "db.internal", "dbconfig.json:", "databases.default.host"],
        ["port", "5432", "default"],
        ["name", "app", "dbconfig.json:", "databases.default.name"],
        ["user", "web", "DBCONFIG_DEFAULT_USER"],
        ["password", "********", ".secrets/dbconfig.json:", "databases.default.password"],
        ["conn_max_age", "60", "default"],
        ["conn_health_checks", "true", "default"],
        # The value and what it means.
        [
            "pool",
            "asgi",
            "(pooled",
            "when",
            "opened",
            "for",
            "an",
            "ASGI",
            "request,",
            "persistent",
            "otherwise)",
            "default",
        ],
        ["statement_timeout", "30s", "dbconfig.json:", "defaults.statement_timeout"],
        ["connect_timeout", "5s", "default"],
        ["application_name", "shop", "override:", "databases.default.application_name"],
        ["network_timeout", "30s", "default"],
        [],
        ["routes"],
        ["reports", "->", "analytics", "dbconfig.json:", "routes.reports"],
    ]


def test_json_has_every_alias_with_sources_and_no_secret(built: Any) -> None:
    output = run("--format", "json")
    assert SECRET not in output
    data = json.loads(output)
    assert [db["alias"] for db in data["databases"]] == ["default", "analytics"]
    analytics = {row["key"]: row for row in data["databases"][1]["settings"]}
    assert analytics["url"] == {
        "key": "url",
        "value": "postgresql://reporter:********@warehouse/analytics?sslmode=require",
        "source": "ANALYTICS_DATABASE_URL",
    }
    assert analytics["password"]["value"] == "********"
    assert analytics["read_only"] == {
        "key": "read_only",
        "value": True,
        "source": "dbconfig.json: databases.analytics.read_only",
    }
    assert data["routes"] == [
        {"route": "reports", "alias": "analytics", "source": "dbconfig.json: routes.reports"}
    ]


def test_text_output_never_shows_a_secret(built: Any) -> None:
    assert SECRET not in run()


def test_unknown_alias_is_a_command_error(built: Any) -> None:
    with pytest.raises(CommandError, match="Unknown alias nope. Known aliases: default, analytics."):
        run("--database", "nope")


def test_without_build_databases_the_command_says_how_to_fix_it(monkeypatch: Any) -> None:
    monkeypatch.setattr("django_dbconfig.conf.config._last_config", None)
    with pytest.raises(CommandError, match=r"DATABASES = build_databases\(BASE_DIR\)"):
        run()


def test_a_secret_option_directly_under_options_is_masked_in_text_and_json(project: Any) -> None:
    # A flat secret option (options.sslpassword) is a key of its own in explain(), not a
    # value nested in another option.
    build_databases(
        project.root,
        environ={},
        overrides={
            "databases": {
                "default": {"backend": "postgresql", "name": "app", "options": {"sslpassword": SECRET}}
            }
        },
    )
    text = run("--database", "default")
    assert ["options.sslpassword", "********", "override:", "databases.default.options.sslpassword"] in [
        line.split() for line in text.splitlines()
    ]
    data = json.loads(run("--format", "json"))
    rows = {row["key"]: row["value"] for row in data["databases"][0]["settings"]}
    assert rows["options.sslpassword"] == "********"
    assert SECRET not in text + json.dumps(data)


@pytest.mark.parametrize(
    ("pool", "shown"),
    [
        ("asgi", "asgi (pooled when opened for an ASGI request, persistent otherwise)"),
        (
            {"when": "asgi", "max_size": 4},
            '{"when": "asgi", "max_size": 4} (pooled when opened for an ASGI request, persistent otherwise)',
        ),
        (True, "true"),
    ],
)
def test_a_pool_for_asgi_requests_is_shown_with_when_it_pools(pool: Any, shown: str) -> None:
    assert display_value("pool", pool) == shown


def test_migrate_entries_are_shown_as_their_keys(project: Any) -> None:
    secret = "a://b@" + SECRET  # a password that looks like a URL is masked all the same
    build_databases(
        project.root,
        environ={},
        overrides={
            "databases": {
                "default": {
                    "backend": "postgresql",
                    "name": "app",
                    "password": secret,
                    "migrate": {"user": "owner", "password": secret, "statement_timeout": "5min"},
                }
            }
        },
    )
    data = json.loads(run("--format", "json"))
    rows = {row["key"]: row["value"] for row in data["databases"][0]["settings"]}
    assert (rows["password"], rows["migrate.password"], rows["migrate.statement_timeout"]) == (
        "********",
        "********",
        "5min",
    )
    assert SECRET not in run() + json.dumps(data)


def test_an_option_value_json_cannot_hold_is_shown_as_text() -> None:
    # A Python object passed through overrides (a cursor class, say) is shown by its str().
    class CursorFactory:
        def __str__(self) -> str:
            return "myproject.db.CursorFactory"

    assert display_value("options", {"cursor_factory": CursorFactory()}) == (
        '{"cursor_factory": "myproject.db.CursorFactory"}'
    )
