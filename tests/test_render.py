"""What each backend renders for each key of the design's table."""

from __future__ import annotations

from typing import Any

import django
import pytest

from django_dbconfig import DbConfigError
from django_dbconfig.backends.mysql.settings import TLS_GUARD
from tests.helpers import needs_django_pool

MARIADB = {"backend": "mariadb", "name": "app", "host": "db"}
MYSQL = {"backend": "mysql", "name": "app", "host": "db"}
PG = {"backend": "postgresql", "name": "app"}


def render(project: Any, **alias: Any) -> dict[str, Any]:
    project.write_config({"databases": {"default": alias}})
    return project.databases()["default"]


def test_postgresql_renders_every_key(project: Any) -> None:
    settings = render(
        project,
        **PG,
        host="db",
        port=6432,
        user="u",
        password="p",
        conn_max_age=None,
        conn_health_checks=False,
        sslmode="verify-full",
        sslrootcert="ca.pem",
        sslcert="/abs/c.pem",
        sslkey="k.pem",
        search_path=["app", "public"],
        statement_timeout=30,
        lock_timeout="500ms",
        idle_in_transaction_session_timeout="1min",
        connect_timeout="1s",
        application_name="web",
        read_only=True,
        atomic_requests=True,
        autocommit=True,
        time_zone="UTC",
        disable_server_side_cursors=True,
        test={"NAME": "test_app"},
        options={"keepalives": 1},
        network_timeout="10s",
    )
    root = str(project.root)
    assert settings == {
        "ENGINE": settings["ENGINE"],
        "NAME": "app",
        "USER": "u",
        "PASSWORD": "p",
        "HOST": "db",
        "PORT": 6432,
        "CONN_MAX_AGE": None,
        "CONN_HEALTH_CHECKS": False,
        "ATOMIC_REQUESTS": True,
        "AUTOCOMMIT": True,
        "TIME_ZONE": "UTC",
        "DISABLE_SERVER_SIDE_CURSORS": True,
        "TEST": {"NAME": "test_app"},
        "OPTIONS": {
            "sslmode": "verify-full",
            "application_name": "web",
            "sslrootcert": f"{root}/ca.pem",
            "sslcert": "/abs/c.pem",
            "sslkey": f"{root}/k.pem",
            "connect_timeout": 2,
            "options": '-c search_path="app","public" -c statement_timeout=30000ms -c lock_timeout=500ms'
            " -c idle_in_transaction_session_timeout=60000ms -c default_transaction_read_only=on",
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 1,
            "keepalives_count": 3,
            "tcp_user_timeout": 10000,
        },
        "DBCONFIG": {"asgi_pool": {}},  # pool "asgi", the default (the engine reads it)
    }
    assert settings["ENGINE"] in ("django.db.backends.postgresql", "django_dbconfig.backends.postgresql")


def test_engine_key_names_a_third_party_backend(project: Any) -> None:
    assert render(project, **PG, engine="django_prometheus.db.backends.postgresql")["ENGINE"] == (
        "django_prometheus.db.backends.postgresql"
    )


def test_geodjangos_engine_path_renders_this_projects_postgis_engine(project: Any) -> None:
    # tests/test_gis_config.py has the other names and URLs.
    assert render(project, **PG, engine="django.contrib.gis.db.backends.postgis")["ENGINE"] == (
        "django_dbconfig.backends.postgis"
    )


@pytest.mark.parametrize(
    ("sslmode", "ssl_mode", "guarded"),
    [
        ("disable", "DISABLED", False),
        ("allow", "PREFERRED", False),
        ("prefer", "PREFERRED", False),
        ("require", "REQUIRED", True),
        ("verify-ca", "VERIFY_CA", True),
        ("verify-full", "VERIFY_IDENTITY", True),
    ],
)
def test_mysql_sslmode_maps_to_an_equal_or_stronger_ssl_mode(
    project: Any, sslmode: str, ssl_mode: str, guarded: bool
) -> None:
    options = render(project, **MARIADB, sslmode=sslmode)["OPTIONS"]
    assert options["ssl_mode"] == ssl_mode
    assert (TLS_GUARD in options.get("init_command", "")) is guarded


def test_mariadb_and_mysql_name_the_statement_timeout_differently(project: Any) -> None:
    mariadb = render(project, **MARIADB, statement_timeout="1500ms", lock_timeout="2500ms", read_only=True)
    mysql = render(project, **MYSQL, statement_timeout="1500ms", lock_timeout="2500ms", read_only=True)
    assert mariadb["OPTIONS"]["init_command"] == (
        "SET SESSION max_statement_time=1.5, innodb_lock_wait_timeout=3, lock_wait_timeout=3, tx_read_only=1"
    )
    assert mysql["OPTIONS"]["init_command"] == (
        "SET SESSION max_execution_time=1500, innodb_lock_wait_timeout=3, lock_wait_timeout=3, transaction_read_only=1"
    )
    assert mariadb["ENGINE"] == mysql["ENGINE"]


def test_mysql_certificates_go_in_the_ssl_option(project: Any) -> None:
    options = render(project, **MYSQL, sslrootcert="ca.pem", sslcert="c.pem", sslkey="k.pem")["OPTIONS"]
    root = str(project.root)
    assert options["ssl"] == {"ca": f"{root}/ca.pem", "cert": f"{root}/c.pem", "key": f"{root}/k.pem"}


def test_server_backend_defaults(project: Any) -> None:
    for alias, port in ((PG, 5432), (MYSQL, 3306)):
        settings = render(project, **alias)
        assert (settings["PORT"], settings["CONN_MAX_AGE"], settings["CONN_HEALTH_CHECKS"]) == (
            port,
            60,
            True,
        )
        assert settings["OPTIONS"]["connect_timeout"] == 5


def test_sqlite_lock_timeout_is_the_busy_timeout(project: Any) -> None:
    settings = render(project, backend="sqlite", name="data/app.db", lock_timeout="2500ms")
    assert settings == {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(project.root / "data/app.db"),
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"timeout": 2.5},
    }


@pytest.mark.parametrize("name", [":memory:", "file:memdb1?mode=memory&cache=shared"])
def test_sqlite_special_names_are_kept(project: Any, name: str) -> None:
    assert render(project, backend="sqlite", name=name)["NAME"] == name


def test_sqlite_busy_timeout_reaches_sqlite(project: Any, django_db_blocker: Any) -> None:
    from tests.conftest import django_connection, query_one

    settings = render(project, backend="sqlite", name="busy.db", lock_timeout="3s")
    with django_db_blocker.unblock(), django_connection(settings) as connection:
        assert query_one(connection, "PRAGMA busy_timeout") == 3000


@pytest.mark.skipif(django.VERSION < (5, 1), reason="Django's pool needs Django 5.1")
def test_pool_turns_persistent_connections_off(project: Any) -> None:
    settings = render(project, **PG, pool={"min_size": 2})
    assert (settings["CONN_MAX_AGE"], settings["OPTIONS"]["pool"]) == (0, {"min_size": 2})


@pytest.mark.skipif(django.VERSION < (5, 1), reason="Django's pool needs Django 5.1")
def test_pool_wins_over_a_conn_max_age_from_defaults(project: Any) -> None:
    project.write_config({"defaults": {"conn_max_age": 60}, "databases": {"default": {**PG, "pool": True}}})
    assert project.databases()["default"]["CONN_MAX_AGE"] == 0


@pytest.mark.skipif(django.VERSION >= (5, 1), reason="only older Django lacks the pool")
def test_pool_on_old_django_is_an_error(project: Any) -> None:
    with pytest.raises(DbConfigError, match="pool needs Django 5.1"):
        render(project, **PG, pool=True)


@pytest.mark.parametrize(
    ("alias", "key", "value"),
    [
        (MYSQL, "search_path", ["a"]),
        (MYSQL, "pool", True),
        (MYSQL, "idle_in_transaction_session_timeout", 5),
        (MYSQL, "application_name", "x"),
        ({"backend": "sqlite", "name": "a"}, "sslmode", "require"),
        ({"backend": "sqlite", "name": "a"}, "statement_timeout", 5),
        ({"backend": "sqlite", "name": "a"}, "host", "h"),
        ({"backend": "sqlite", "name": "a"}, "read_only", True),
        ({"backend": "sqlite", "name": "a"}, "connect_timeout", 1),
    ],
)
def test_a_key_the_backend_cannot_honour_is_an_error(
    project: Any, alias: dict[str, Any], key: str, value: Any
) -> None:
    with pytest.raises(DbConfigError, match=f"{key} is not supported on"):
        render(project, **alias, **{key: value})


@pytest.mark.parametrize(
    ("backend", "error", "refused"),
    [
        ("postgresql", type("E", (Exception,), {"sqlstate": "25006"})(), True),
        ("postgresql", type("E", (Exception,), {"sqlstate": "25P02"})(), False),
        ("postgresql", None, False),
        ("mysql", Exception(1792, "Cannot execute statement in a READ ONLY transaction"), True),
        ("mariadb", Exception(1792, "Cannot execute statement in a READ ONLY transaction"), True),
        ("mysql", Exception(1290, "The MySQL server is running with the --read-only option"), False),
        ("mysql", Exception(), False),
        ("mysql", None, False),
        ("sqlite", Exception(1792), False),
    ],
)
def test_each_family_recognises_its_drivers_refusal_of_a_write(
    backend: str, error: BaseException | None, refused: bool
) -> None:
    # What the read-only guard asks of the driver's error (args or SQLSTATE), without a server.
    from django_dbconfig.backends import BACKENDS

    assert BACKENDS[backend].refuses_write(error) is refused


@pytest.mark.parametrize(
    ("error", "server_read_only"),
    [
        (
            Exception(1290, "The MariaDB server is running with the --read-only option so it cannot execute"),
            True,
        ),
        (Exception(1290, "The MySQL server is running with the --super-read-only option so it cannot"), True),
        (
            Exception(1290, "The MySQL server is running with the --secure-file-priv option so it cannot"),
            False,
        ),
        (Exception(1792, "Cannot execute statement in a READ ONLY transaction"), False),
        (Exception(), False),
        (None, False),
    ],
)
def test_mysql_tells_the_servers_read_only_from_the_sessions(
    error: BaseException | None, server_read_only: bool
) -> None:
    # What a write alias's engine asks before it drops a demoted writer's connection.
    from django_dbconfig.backends.mysql.settings import MySQL

    assert MySQL().server_read_only(error) is server_read_only


@pytest.mark.parametrize("key", ["ENGINE", "NAME", "HOST", "PORT", "USER"])
def test_a_config_holds_only_the_entry_it_built(project: Any, key: str) -> None:
    config = project.load(
        overrides={
            "databases": {"default": {"backend": "postgresql", "host": "h", "name": "app", "user": "u"}}
        }
    )
    built = dict(config.databases()["default"])
    assert config.holds("default", built)
    assert config.holds("default", {**built, "PASSWORD": "other", "OPTIONS": {}})  # not an identity key
    assert not config.holds("default", {**built, key: "elsewhere"})
    assert not config.holds("other", built)
    # SQLite has no HOST, PORT or USER: missing and empty are the same there.
    lite = project.load(overrides={"databases": {"default": {"backend": "sqlite", "name": "a.db"}}})
    entry = dict(lite.databases()["default"])
    assert lite.holds("default", {**entry, "HOST": "", "USER": None})


def test_the_tls_guard_reads_the_cipher_from_each_servers_status_table(project: Any) -> None:
    # Each server keeps the session's status variables in another table.
    where = {"mysql": "performance_schema.session_status", "mariadb": "information_schema.SESSION_STATUS"}
    for backend, table in where.items():
        options = render(project, **(MYSQL if backend == "mysql" else MARIADB), sslmode="require")["OPTIONS"]
        assert options["init_command"] == (
            f"SET SESSION sql_mode = IF(COALESCE((SELECT VARIABLE_VALUE FROM {table} WHERE VARIABLE_NAME "
            f"= 'Ssl_cipher'), '') = '', '{TLS_GUARD}', @@SESSION.sql_mode)"
        )


def test_a_driver_counts_as_installed_only_when_it_can_be_imported() -> None:
    from django_dbconfig.backends import BACKENDS
    from django_dbconfig.backends.base.settings import installed

    assert [installed("json"), installed("django_dbconfig_no_such_driver")] == [True, False]
    assert installed("django_dbconfig_no_such_driver.module") is False  # find_spec raises for these
    # SQLite needs no driver of its own; the test environment has psycopg and mysqlclient.
    assert [BACKENDS[name].driver_installed() for name in ("sqlite", "postgresql", "mysql")] == [
        True,
        True,
        True,
    ]


def test_mysql_network_timeout_reaches_only_the_projects_engine(project: Any) -> None:
    # Django's own engine (engine: ...) would ignore the DBCONFIG entry; null turns it off.
    assert render(project, **MYSQL)["DBCONFIG"] == {"network_timeout": 30.0}
    assert "DBCONFIG" not in render(project, **MYSQL, engine="django.db.backends.mysql")
    assert "DBCONFIG" not in render(project, **MYSQL, network_timeout=None)


@pytest.mark.parametrize(("given", "seconds"), [("500ms", 1), ("1001ms", 2), ("3s", 3)])
def test_mysql_connect_timeout_is_rounded_up_to_whole_seconds(project: Any, given: str, seconds: int) -> None:
    # The driver takes whole seconds: a timeout is never made shorter than asked.
    assert render(project, **MYSQL, connect_timeout=given)["OPTIONS"]["connect_timeout"] == seconds


@needs_django_pool
def test_pool_true_shows_conn_max_age_0_from_the_pool_key(project: Any) -> None:
    project.write_config({"databases": {"default": {**PG, "pool": True}}})
    rows = {row.key: (row.value, row.source) for row in project.load().explain("default")}
    assert (rows["pool"], rows["conn_max_age"]) == (
        ("true", "dbconfig.json: databases.default.pool"),
        ("0", "dbconfig.json: databases.default.pool"),
    )
    assert project.databases()["default"]["CONN_MAX_AGE"] == 0


def test_pool_for_asgi_keeps_conn_max_age_for_other_connections(project: Any) -> None:
    project.write_config({"databases": {"default": {**PG, "pool": "asgi", "conn_max_age": 300}}})
    rows = {row.key: (row.value, row.source) for row in project.load().explain("default")}
    assert rows["conn_max_age"] == ("300", "dbconfig.json: databases.default.conn_max_age")
    assert project.databases()["default"]["CONN_MAX_AGE"] == 300


@needs_django_pool
def test_pool_true_accepts_conn_max_age_0_written_out(project: Any) -> None:
    assert render(project, **PG, pool=True, conn_max_age=0)["CONN_MAX_AGE"] == 0
