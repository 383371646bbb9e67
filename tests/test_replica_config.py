"""A replica inherits its primary's keys (design: "Replicas"), on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from django_dbconfig import DbConfigError
from tests.helpers import needs_django_pool

PRIMARY = {
    "backend": "postgresql",
    "host": "db.internal",
    "port": 6432,
    "name": "app",
    "user": "app",
    "search_path": ["app", "public"],
    "sslmode": "verify-full",
    "sslrootcert": "certs/ca.pem",
    "application_name": "web",
    "lock_timeout": "2s",
    "options": {"keepalives_idle": 30},
}
README = {
    "defaults": {"conn_max_age": 60, "statement_timeout": "30s"},
    "databases": {
        "default": {
            "backend": "postgresql",
            "host": "db.internal",
            "name": "app",
            "search_path": ["app", "public"],
            "sslmode": "verify-full",
            "sslrootcert": "certs/ca.pem",
        },
        "replica": {"host": "replica.internal", "replica_of": "default"},
    },
    "environments": {"development": {"databases": {"default": {"backend": "sqlite", "name": "db.sqlite3"}}}},
}


def test_the_readme_replica_renders_with_the_primarys_tls_search_path_and_password(project: Any) -> None:
    project.write_config(README)
    project.write_secrets({"databases": {"default": {"user": "app", "password": "primary-pw"}}})
    databases = project.databases()
    primary, replica = databases["default"], databases["replica"]
    assert {key: replica[key] for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT")} == {  # type: ignore[literal-required]
        "NAME": "app",
        "USER": "app",
        "PASSWORD": "primary-pw",
        "HOST": "replica.internal",
        "PORT": 5432,
    }
    assert replica["OPTIONS"] == {
        "sslmode": "verify-full",
        "sslrootcert": primary["OPTIONS"]["sslrootcert"],
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 15,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 30000,
        "options": '-c search_path="app","public" -c statement_timeout=30000ms '
        "-c default_transaction_read_only=on",
    }
    assert replica["TEST"] == {"MIRROR": "default"}


def test_dbconfig_shows_each_inherited_value_with_its_source(project: Any) -> None:
    project.write_config(README)
    project.write_secrets({"databases": {"default": {"user": "app", "password": "primary-pw"}}})
    rows = {row.key: (row.value, row.source) for row in project.load().explain("replica")}
    assert rows == {
        "backend": ("postgresql", "inherited from default: dbconfig.json: databases.default.backend"),
        "host": ("replica.internal", "dbconfig.json: databases.replica.host"),
        "port": ("5432", "default"),
        "name": ("app", "inherited from default: dbconfig.json: databases.default.name"),
        "user": ("app", "inherited from default: .secrets/dbconfig.json: databases.default.user"),
        "password": (
            "********",
            "inherited from default: .secrets/dbconfig.json: databases.default.password",
        ),
        "conn_max_age": ("60", "dbconfig.json: defaults.conn_max_age"),
        "conn_health_checks": ("true", "default"),
        "sslmode": ("verify-full", "inherited from default: dbconfig.json: databases.default.sslmode"),
        "sslrootcert": (
            "certs/ca.pem",
            "inherited from default: dbconfig.json: databases.default.sslrootcert",
        ),
        "search_path": (
            "app, public",
            "inherited from default: dbconfig.json: databases.default.search_path",
        ),
        "statement_timeout": ("30s", "dbconfig.json: defaults.statement_timeout"),
        "connect_timeout": ("5s", "default"),
        "read_only": ("true", "default: a replica is read-only"),
        "replica_of": ("default", "dbconfig.json: databases.replica.replica_of"),
        "network_timeout": ("30s", "default"),
        "pool": ("asgi (pooled when opened for an ASGI request, persistent otherwise)", "default"),
    }


@needs_django_pool
def test_host_port_pool_and_url_are_not_inherited(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {"url": "postgresql://app@db.internal:6432/app", "pool": True},
                "replica": {"replica_of": "default"},
            }
        }
    )
    replica = project.databases()["default"], project.databases()["replica"]
    assert [replica[1].get("HOST"), replica[1]["PORT"], "pool" in replica[1]["OPTIONS"]] == [
        None,
        5432,
        False,
    ]
    assert replica[0]["OPTIONS"]["pool"] is True
    assert "url" not in project.values("replica")


def test_the_replicas_own_key_wins_even_from_a_lower_layer(project: Any) -> None:
    project.write_config(
        {"databases": {"default": PRIMARY, "replica": {"replica_of": "default", "sslmode": "require"}}}
    )
    project.write_secrets({"databases": {"default": {"sslmode": "verify-ca"}}})
    assert project.databases()["default"]["OPTIONS"]["sslmode"] == "verify-ca"
    assert project.databases()["replica"]["OPTIONS"]["sslmode"] == "require"
    assert project.sources("replica")["sslmode"] == "dbconfig.json: databases.replica.sslmode"


def test_the_primarys_own_value_beats_the_defaults_the_replica_also_gets(project: Any) -> None:
    project.write_config(
        {
            "defaults": {"statement_timeout": "30s"},
            "databases": {
                "default": {**PRIMARY, "statement_timeout": "5min"},
                "replica": {"replica_of": "default"},
            },
        }
    )
    assert project.values("replica")["statement_timeout"] == "5min"
    assert project.sources("replica")["statement_timeout"] == (
        "inherited from default: dbconfig.json: databases.default.statement_timeout"
    )


def test_session_settings_and_options_are_inherited(project: Any) -> None:
    project.write_config({"databases": {"default": PRIMARY, "replica": {"replica_of": "default"}}})
    replica = project.databases()["replica"]["OPTIONS"]
    assert [replica["application_name"], replica["keepalives_idle"]] == ["web", 30]
    assert "-c lock_timeout=2000ms" in replica["options"]


def test_a_replica_naming_another_user_does_not_get_the_primarys_password(project: Any) -> None:
    project.write_config(
        {"databases": {"default": PRIMARY, "replica": {"replica_of": "default", "user": "reader"}}}
    )
    project.write_secrets({"databases": {"default": {"password": "primary-pw"}}})
    replica = project.databases()["replica"]
    assert [replica["USER"], replica.get("PASSWORD")] == ["reader", None]


def test_a_replica_naming_the_same_user_gets_its_password(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": PRIMARY,
                "replica": {"url": "postgresql://app@replica.internal/app", "replica_of": "default"},
            }
        }
    )
    project.write_secrets({"databases": {"default": {"password": "primary-pw"}}})
    replica = project.databases()["replica"]
    assert [replica["USER"], replica["PASSWORD"], replica["OPTIONS"]["sslmode"]] == [
        "app",
        "primary-pw",
        "verify-full",
    ]


def test_a_replica_with_its_own_password_keeps_it_and_takes_the_user(project: Any) -> None:
    project.write_config({"databases": {"default": PRIMARY, "replica": {"replica_of": "default"}}})
    project.write_secrets(
        {"databases": {"default": {"password": "primary-pw"}, "replica": {"password": "replica-pw"}}}
    )
    replica = project.databases()["replica"]
    assert [replica["USER"], replica["PASSWORD"]] == ["app", "replica-pw"]


def test_a_replica_is_read_only_unless_it_says_otherwise(project: Any) -> None:
    project.write_config(
        {
            "defaults": {"read_only": False},
            "databases": {
                "default": {**PRIMARY, "read_only": False},
                "replica": {"replica_of": "default"},
                "writable": {"replica_of": "default", "read_only": False, "host": "w.internal"},
            },
        }
    )
    databases = project.databases()
    assert "default_transaction_read_only=on" in databases["replica"]["OPTIONS"]["options"]
    assert "default_transaction_read_only=off" in databases["writable"]["OPTIONS"]["options"]


def test_replica_of_works_on_sqlite_and_the_development_profile_keeps_the_routing_shape(project: Any) -> None:
    project.write_config(README)
    config = project.load(environment="development")
    databases = config.databases()
    assert dict(config.replicas) == {"default": ("replica",)}
    assert databases["replica"] == {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(project.root / "db.sqlite3"),
        "CONN_MAX_AGE": 60,
        "TEST": {"MIRROR": "default"},
    }
    assert project.sources("replica", environment="development")["name"] == (
        "inherited from default: dbconfig.json: environments.development.databases.default.name"
    )


def test_a_sqlite_replica_may_name_its_own_file(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {"backend": "sqlite", "name": "a.sqlite3"},
                "r": {"replica_of": "default", "name": "a.sqlite3"},
            }
        }
    )
    assert project.databases()["r"]["NAME"] == str(project.root / "a.sqlite3")


def test_a_replica_of_another_backend_family_is_still_refused(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {"backend": "sqlite", "name": "a.sqlite3"},
                "r": {"url": "postgresql://app@r/app", "replica_of": "default"},
            }
        }
    )
    with pytest.raises(DbConfigError) as caught:
        project.load()
    assert str(caught.value) == (
        'dbconfig.json: databases.r.replica_of (alias "r"): a postgresql alias cannot replicate the sqlite '
        'alias "default". Where a profile moves "default" to another backend, move "r" too, or leave its '
        "backend to replica_of (it inherits the primary's)."
    )


def test_the_dbconfig_command_shows_inherited_values_with_their_source(project: Any) -> None:
    from io import StringIO

    from django.core.management import call_command

    from django_dbconfig import build_databases

    project.write_config(README)
    project.write_secrets({"databases": {"default": {"user": "app", "password": "primary-pw"}}})
    build_databases(project.root, environ={})
    out = StringIO()
    call_command("dbconfig", "--database", "replica", stdout=out, no_color=True)
    lines = [line.split(None, 2) for line in out.getvalue().splitlines() if line.strip()]
    assert [
        "sslmode",
        "verify-full",
        "inherited from default: dbconfig.json: databases.default.sslmode",
    ] in lines
    assert [
        "password",
        "********",
        "inherited from default: .secrets/dbconfig.json: databases.default.password",
    ] in lines
    assert ["read_only", "true", "default: a replica is read-only"] in lines
    assert "primary-pw" not in out.getvalue()


def test_a_replica_with_its_own_password_does_not_take_the_primarys_password_provider(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {**PRIMARY, "password_provider": "tests.test_replica_config.token"},
                "replica": {"replica_of": "default"},
                "static": {"replica_of": "default", "host": "static.internal"},
            }
        }
    )
    project.write_secrets({"databases": {"static": {"password": "static-pw"}}})
    values = {alias: project.load().values(alias) for alias in ("replica", "static")}
    assert values["replica"]["password_provider"] == "tests.test_replica_config.token"
    assert ["password_provider" in values["static"], values["static"]["password"]] == [False, "static-pw"]


def token(alias: str, settings: Any) -> str:
    return "a-token"


def test_a_sqlite_replica_has_no_read_only_mode_and_nothing_unused(project: Any) -> None:
    # Read-only is a replica's default, weak like one: SQLite has no such mode and ignores it.
    project.write_config(
        {
            "databases": {
                "default": {"backend": "sqlite", "name": "app.db"},
                "r": {"replica_of": "default", "name": "r.db"},
            }
        }
    )
    config = project.load()
    assert "read_only" not in project.values("r")
    assert config.unused("r") == ()
