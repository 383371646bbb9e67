"""Which engine an alias gets: GeoDjango's names select this project's GIS engines, and
another project's engine gets check W012 naming each feature it loses and the key that
asked for it. No server needed.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from django.db.utils import load_backend

from django_dbconfig import DbConfigError, build_databases
from django_dbconfig.backends import ENGINES, probe_module, vendor_of
from tests.test_checks import static

PG = {"host": "127.0.0.1", "name": "app", "sslmode": "disable"}
MY = {"host": "127.0.0.1", "name": "app", "sslmode": "disable"}


def build(tmp_path: Path, databases: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    return build_databases(tmp_path, environ=environ or {}, overrides={"databases": databases})


@pytest.mark.parametrize(
    "keys",
    [
        {"backend": "postgresql", "engine": "postgis", **PG},
        {"engine": "postgis", **PG},  # the short name says the backend
        {"backend": "postgresql", "engine": "django.contrib.gis.db.backends.postgis", **PG},
        {"backend": "postgresql", "engine": "django_dbconfig.backends.postgis", **PG},
        {"url": "postgis://app@127.0.0.1/app", "sslmode": "disable"},
        {"url": "postgis+psycopg://app@127.0.0.1/app", "sslmode": "disable"},
    ],
)
def test_postgis_names_and_urls_select_this_projects_postgis_engine(
    tmp_path: Path, keys: dict[str, Any]
) -> None:
    entry = build(tmp_path, {"default": keys})["default"]
    assert (entry["ENGINE"], vendor_of(entry)) == ("django_dbconfig.backends.postgis", "postgresql")
    # Rendered as PostgreSQL: the keepalives of network_timeout are there.
    assert entry["OPTIONS"]["tcp_user_timeout"] == 30000


@pytest.mark.parametrize(
    ("keys", "vendor_backend"),
    [
        ({"backend": "mariadb", "engine": "mysql_gis", **MY}, "mariadb"),
        ({"engine": "mysql_gis", **MY}, "mysql"),
        ({"backend": "mysql", "engine": "django.contrib.gis.db.backends.mysql", **MY}, "mysql"),
        ({"url": "mysqlgis://app@127.0.0.1/app", "sslmode": "disable"}, "mysql"),
    ],
)
def test_mysql_gis_names_and_urls_select_this_projects_mysql_gis_engine(
    tmp_path: Path, keys: dict[str, Any], vendor_backend: str
) -> None:
    entry = build(tmp_path, {"default": {**keys, "read_only": True}})["default"]
    assert entry["ENGINE"] == "django_dbconfig.backends.mysql_gis"
    # network_timeout reaches the engine, and read_only speaks the backend's variable names.
    assert entry["DBCONFIG"] == {"network_timeout": 30.0}
    variable = "tx_read_only" if vendor_backend == "mariadb" else "transaction_read_only"
    assert f"{variable}=1" in entry["OPTIONS"]["init_command"]


def test_every_feature_of_postgresql_is_rendered_for_postgis(tmp_path: Path) -> None:
    keys = {"host": "127.0.0.1", "name": "app", "user": "app", "statement_timeout": "5s", "read_only": True}
    plain, gis = (
        build(tmp_path, {"default": {**keys, **extra, "pooler": "session", "password_provider": "a.b"}})[
            "default"
        ]
        for extra in ({"backend": "postgresql"}, {"engine": "postgis"})
    )
    assert gis["ENGINE"] == "django_dbconfig.backends.postgis"
    assert {**gis, "ENGINE": plain["ENGINE"]} == plain


def test_a_short_engine_name_of_another_backend_is_an_error_naming_both_sources(tmp_path: Path) -> None:
    with pytest.raises(DbConfigError) as error:
        build(tmp_path, {"default": {"backend": "mariadb", "engine": "postgis", **MY}})
    assert str(error.value) == (
        'override: databases.default.engine (alias "default"): engine "postgis" is an engine for the '
        'backend "postgresql", but the backend is "mariadb" (override: databases.default.backend). '
        'For mariadb use "mysql_gis", or another engine\'s dotted module path.'
    )


def test_a_short_engine_name_for_a_backend_that_has_none_says_to_give_a_path(tmp_path: Path) -> None:
    with pytest.raises(DbConfigError) as error:
        build(tmp_path, {"default": {"backend": "sqlite", "name": "db.sqlite3", "engine": "postgis"}})
    assert str(error.value) == (
        'override: databases.default.engine (alias "default"): engine "postgis" is an engine for the '
        'backend "postgresql", but the backend is "sqlite" (override: databases.default.backend). '
        "sqlite has no short engine names: give an engine's dotted module path, or remove engine."
    )


def test_an_unknown_short_engine_name_is_an_error_with_a_did_you_mean(tmp_path: Path) -> None:
    (tmp_path / "dbconfig.json").write_text(
        '{"databases": {"default": {"backend": "postgresql", "name": "a"}}}'
    )
    with pytest.raises(DbConfigError) as error:
        build_databases(tmp_path, environ={"DBCONFIG_DEFAULT_ENGINE": "postgres_gis"})
    assert str(error.value) == (
        'DBCONFIG_DEFAULT_ENGINE (alias "default"): "postgres_gis" is not an engine name django-dbconfig '
        'knows. Did you mean "postgis"? For postgresql use "postgis", or another engine\'s dotted module path.'
    )


def test_the_gis_engines_load_and_join_both_wrappers() -> None:
    from django.contrib.gis.db.backends.mysql.base import DatabaseWrapper as GeoMySQL
    from django.contrib.gis.db.backends.postgis.base import DatabaseWrapper as GeoPostGIS

    from django_dbconfig.backends.mysql.base import DatabaseWrapper as MySQL
    from django_dbconfig.backends.postgresql.base import DatabaseWrapper as PostgreSQL

    postgis = load_backend("django_dbconfig.backends.postgis").DatabaseWrapper
    mysql_gis = load_backend("django_dbconfig.backends.mysql_gis").DatabaseWrapper
    assert issubclass(postgis, PostgreSQL) and issubclass(postgis, GeoPostGIS)
    assert issubclass(mysql_gis, MySQL) and issubclass(mysql_gis, GeoMySQL)
    # GeoDjango's spatial classes, this project's dbshell.
    assert postgis.ops_class is GeoPostGIS.ops_class and postgis.client_class is PostgreSQL.client_class
    assert (
        mysql_gis.features_class is GeoMySQL.features_class and mysql_gis.client_class is MySQL.client_class
    )
    # dbcheck and the health endpoint use the family's probe.
    assert {probe_module(vendor_of({"ENGINE": b.engine})).__name__ for b in ENGINES.values()} == {
        "django_dbconfig.backends.postgresql.probe",
        "django_dbconfig.backends.mysql.probe",
    }
    assert importlib.import_module("django_dbconfig.backends.postgis.base").DatabaseWrapper is postgis


# ---------------------------------------------------------------- W012: another project's engine


def test_another_engine_on_postgresql_warns_naming_each_lost_feature_and_its_key(tmp_path: Path) -> None:
    (tmp_path / "dbconfig.json").write_text(
        '{"databases": {"default": {"backend": "postgresql", "host": "127.0.0.1", "name": "app",'
        ' "sslmode": "disable", "engine": "django_prometheus.db.backends.postgresql",'
        ' "password_provider": "myproject.db.token", "pooler": "session", "statement_timeout": "5s",'
        ' "read_only": true}}}'
    )
    databases = build_databases(tmp_path, environ={"DBCONFIG_DEFAULT_CONN_HEALTH_CHECKS": "false"})
    assert static(databases) == [
        (
            "dbconfig.W012",
            '"default" is served by the engine django_prometheus.db.backends.postgresql, not by one of '
            "django-dbconfig's, and loses what its settings ask for: 1) a password from the provider for "
            "each new connection, asked by password_provider: myproject.db.token (dbconfig.json: "
            "databases.default.password_provider); 2) the session settings (statement_timeout, "
            "default_transaction_read_only) sent as SET behind the pooler, asked by pooler: session "
            "(dbconfig.json: databases.default.pooler); 3) the pool of the connections an ASGI request "
            "opens (requests would open their own), asked by pool: asgi (pooled when opened for an ASGI "
            "request, persistent otherwise) (default); 4) the close of the connections an ASGI request "
            "opened, at its end (each request would leave its connection open), asked by conn_max_age: 60 "
            "(default).",
        )
    ]


def test_another_engine_on_postgresql_loses_the_asgi_pool_of_the_default(tmp_path: Path) -> None:
    databases = build(
        tmp_path,
        {"default": {"backend": "postgresql", "engine": "django_prometheus.db.backends.postgresql", **PG}},
    )
    assert "asgi_pool" in databases["default"]["DBCONFIG"]  # what the other engine does not read
    (found,) = [message for check, message in static(databases) if check == "dbconfig.W012"]
    assert (
        "2) the pool of the connections an ASGI request opens (requests would open their own), asked by "
        "pool: asgi (pooled when opened for an ASGI request, persistent otherwise) (default); 3) the close "
        "of the connections an ASGI request opened"
    ) in found


def test_another_engine_on_mariadb_warns_about_network_timeout_and_the_socket_health_check(
    tmp_path: Path,
) -> None:
    databases = build(
        tmp_path,
        {
            "default": {
                "backend": "mariadb",
                "engine": "django_prometheus.db.backends.mysql",
                "network_timeout": "20s",
                "conn_max_age": 0,
                **MY,
            }
        },
    )
    assert static(databases) == [
        (
            "dbconfig.W012",
            '"default" is served by the engine django_prometheus.db.backends.mysql, not by one of '
            "django-dbconfig's, and loses what its settings ask for: 1) TCP keepalives and TCP_USER_TIMEOUT "
            "on the socket, asked by network_timeout: 20s (override: databases.default.network_timeout); "
            "2) the socket health check (Django's query per request instead), asked by "
            "conn_health_checks: true (default).",
        )
    ]


def test_this_projects_engines_and_sqlite_get_no_engine_warning(tmp_path: Path) -> None:
    provided = {
        "password_provider": "a.b",
        "network_timeout": "20s",
        "pooler": "session",
        "search_path": ["x"],
    }
    databases = build(
        tmp_path,
        {
            "default": {"engine": "postgis", **PG, **provided},
            "plain": {"backend": "postgresql", **PG, **provided},
            "old": {
                "backend": "postgresql",
                "engine": "django_dbconfig.engines.postgresql",
                **PG,
                **provided,
            },
            "geo_my": {"backend": "mariadb", "engine": "mysql_gis", **MY, "password_provider": "a.b"},
            "lite": {
                "backend": "sqlite",
                "name": "x.db",
                "engine": "django.contrib.gis.db.backends.spatialite",
            },
        },
    )
    assert [found for found in static(databases) if found[0] == "dbconfig.W012"] == []


def test_the_engine_warning_has_a_hint_that_says_how_to_keep_the_features() -> None:
    from django_dbconfig.core import problems

    found = problems.problem(problems.W012, "x", alias="default")
    assert found.hint == (
        'Remove engine for "default" to have django-dbconfig\'s engine serve it with every feature '
        '(for GeoDjango: engine "postgis" or "mysql_gis"), or remove the keys named above; once the loss '
        'is accepted, add "dbconfig.W012" to SILENCED_SYSTEM_CHECKS.'
    )
