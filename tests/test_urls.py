"""Database URLs: unknown query parameters are errors, Django's keys map in any case, and Unix
socket directories (Cloud SQL's /cloudsql/PROJECT:REGION:INSTANCE) become HOST in every form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from django_dbconfig import load_config
from django_dbconfig.core.errors import DbConfigError
from tests.conftest import django_connection, query_one

SOCKET = "/cloudsql/proj:europe-west1:inst"


def entry(url: str) -> dict[str, Any]:
    return dict(load_config(environ={"DATABASE_URL": url}).databases()["default"])


def error(url: str) -> str:
    with pytest.raises(DbConfigError) as caught:
        load_config(environ={"DATABASE_URL": url})
    return str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"postgres://app:pw@/{SOCKET}/shop",  # raw: scheme://user@//cloudsql/.../name
        "postgres://app:pw@%2Fcloudsql%2Fproj%3Aeurope-west1%3Ainst/shop",
        f"postgres://app:pw@/shop?host={SOCKET}",
        f"mysql://app:pw@/{SOCKET}/shop",
        f"mysql://app:pw@/shop?unix_socket={SOCKET}",
    ],
)
def test_a_cloud_sql_socket_is_the_host_in_every_form(url: str) -> None:
    settings = entry(url)
    assert (settings["HOST"], settings["NAME"]) == (SOCKET, "shop")


def test_a_raw_socket_url_keeps_its_query() -> None:
    settings = entry(f"postgres://app:pw@/{SOCKET}/shop?sslmode=disable")
    assert (settings["HOST"], settings["NAME"], settings["OPTIONS"]["sslmode"]) == (SOCKET, "shop", "disable")


def test_a_socket_parameter_is_the_host_and_the_url_its_source() -> None:
    config = load_config(environ={"DATABASE_URL": f"mysql://app@/shop?unix_socket={SOCKET}"})
    assert {row.key: (row.value, row.source) for row in config.explain("default")}["host"] == (
        SOCKET,
        "DATABASE_URL",
    )
    # Only a socket parameter names a host: another path in the query stays what it is.
    certificate = load_config(environ={"DATABASE_URL": "postgres://db/shop?sslrootcert=/etc/ssl/ca.pem"})
    assert certificate.databases()["default"]["OPTIONS"]["sslrootcert"] == "/etc/ssl/ca.pem"


def test_a_socket_parameter_with_a_nul_is_refused_naming_the_url_and_alias() -> None:
    assert error("postgres://app@/shop?host=/cloud%00sql") == (
        'DATABASE_URL (alias "default"): host: contains a NUL character, which no database driver accepts.'
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgres://db/shop?sslmode=require&sslmode=disable",
            'DATABASE_URL (alias "default"): the URL gives sslmode more than once.',
        ),
        (
            "postgres://db/shop?connect_timeout=soon",
            'DATABASE_URL (alias "default"): connect_timeout: expected a duration such as 30, "500ms", '
            '"30s", "5min" or "1h", got \'soon\'.',
        ),
    ],
)
def test_a_bad_key_in_a_query_is_refused_naming_the_url_and_alias(url: str, message: str) -> None:
    assert error(url) == message


def test_a_socket_parameter_beside_a_host_is_refused_with_the_form_to_write() -> None:
    message = error(f"postgres://app@db.internal/shop?host={SOCKET}")
    assert "the URL has a host and a host query parameter" in message
    assert "%2Fcloudsql%2FPROJECT%3AREGION%3AINSTANCE" in message


def test_django_keys_in_a_query_map_to_keys_in_any_case() -> None:
    settings = entry("postgres://app@db.internal/shop?CONN_MAX_AGE=600&Conn_Health_Checks=false")
    assert (settings["CONN_MAX_AGE"], settings["CONN_HEALTH_CHECKS"]) == (600, False)
    assert "CONN_MAX_AGE" not in settings.get("OPTIONS", {})


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (
            "mysql://app:pw@db.internal/shop?reconnect=true",
            'query parameter "reconnect" is neither a key nor an option of the MySQL driver',
        ),
        (
            "postgres://app:pw@db.internal/shop?ssl_require=true",
            'query parameter "ssl_require" is neither a key nor an option of the PostgreSQL driver',
        ),
        ("postgres://app:pw@db.internal/shop?sslmod=require", 'Did you mean "sslmode"?'),
    ],
)
def test_an_unknown_query_parameter_is_an_error_never_showing_the_url(url: str, said: str) -> None:
    message = error(url)
    assert said in message
    assert "pw" not in message.replace("password", "")


def test_driver_parameters_of_the_backend_pass_through() -> None:
    assert entry("mysql://app@db.internal/shop?charset=utf8mb4")["OPTIONS"]["charset"] == "utf8mb4"
    assert entry("postgres://app@db.internal/shop?gssencmode=disable")["OPTIONS"]["gssencmode"] == "disable"


def test_a_control_character_in_a_schema_name_is_refused_at_build_time(tmp_path: Path) -> None:
    with pytest.raises(DbConfigError) as caught:
        load_config(
            tmp_path,
            environ={},
            overrides={"databases": {"default": {"url": "postgres://a@h/d", "search_path": ["app\tdata"]}}},
        )
    assert "search_path: schema name 'app\\tdata' contains a control character" in str(caught.value)


@pytest.mark.postgresql
def test_a_raw_socket_url_reaches_postgresql_over_its_unix_socket(shared_postgres: dict[str, Any]) -> None:
    directory = "/var/run/postgresql"
    if not Path(directory, ".s.PGSQL.5432").exists():
        pytest.fail(f"PostgreSQL's socket is not in {directory}")
    settings = entry(f"postgresql://{shared_postgres['user']}@/{directory}/{shared_postgres['dbname']}")
    assert settings["HOST"] == directory
    with django_connection(settings) as connection:
        assert query_one(connection, "SELECT inet_server_addr() IS NULL") is True  # no TCP address: a socket


@pytest.mark.mariadb
def test_a_raw_socket_url_reaches_mariadb_over_its_unix_socket(shared_mariadb: dict[str, Any]) -> None:
    socket = "/run/mysqld/mysqld.sock"
    if not Path(socket).exists():
        pytest.fail(f"MariaDB's socket is not {socket}")
    settings = entry(f"mariadb://{shared_mariadb['user']}@/{socket}/{shared_mariadb['database']}")
    assert settings["HOST"] == socket
    with django_connection(settings) as connection:
        assert "UNIX socket" in connection.connection.get_host_info()
        assert query_one(connection, "SELECT 1") == 1


def test_an_unknown_query_parameter_is_refused_with_the_fix() -> None:
    assert error("postgres://db/shop?OPTIONS=-c%20work_mem%3D64MB") == (
        'DATABASE_URL (alias "default"): the URL\'s query parameter "OPTIONS" is neither a key nor an '
        "option of the PostgreSQL driver, which would refuse it at connect time. Remove it from the URL "
        "(settings such as reconnect or ssl_require belong to other frameworks), or set the key it "
        "stands for."
    )


@pytest.mark.parametrize(
    ("parameter", "meant"),
    [("statment_timeout", "statement_timeout"), ("target_session_attr", "target_session_attrs")],
)
def test_a_misspelt_key_in_a_query_gets_a_did_you_mean(parameter: str, meant: str) -> None:
    assert error(f"postgres://db/shop?{parameter}=x") == (
        f'DATABASE_URL (alias "default"): the URL\'s query parameter "{parameter}" is neither a key nor '
        "an option of the PostgreSQL driver, which would refuse it at connect time. "
        f'Did you mean "{meant}"? Remove it from the URL (settings such as reconnect or ssl_require '
        "belong to other frameworks), or set the key it stands for."
    )


def test_a_misspelt_key_the_query_cannot_set_gets_no_did_you_mean() -> None:
    # backend is set by the scheme, never by the query: suggesting it would mislead.
    assert error("postgres://db/shop?backnd=mysql") == (
        'DATABASE_URL (alias "default"): the URL\'s query parameter "backnd" is neither a key nor an '
        "option of the PostgreSQL driver, which would refuse it at connect time. Remove it from the URL "
        "(settings such as reconnect or ssl_require belong to other frameworks), or set the key it "
        "stands for."
    )


def test_a_connection_key_of_the_query_is_a_key_not_a_driver_option() -> None:
    config = load_config(environ={"DATABASE_URL": "postgres://db/shop?target_session_attrs=read-write"})
    rows = {row.key: (row.value, row.source) for row in config.explain("default")}
    assert rows["target_session_attrs"] == ("read-write", "DATABASE_URL")
    assert "options.target_session_attrs" not in rows


def test_mysqls_ssl_parameter_that_is_no_certificate_passes_to_the_driver() -> None:
    assert entry("mysql://db/shop?ssl=true")["OPTIONS"]["ssl"] is True


def test_a_query_option_for_a_gis_engine_is_checked_as_an_alias_option_keeping_its_name() -> None:
    # GeoDjango's engine is another project's: the query is checked against the family's
    # options when the alias is built, and the message names the option as written.
    assert error("postgis://app@db.internal/shop?ApplicationName=x") == (
        'DATABASE_URL: ApplicationName (alias "default"): options.ApplicationName is not an option of '
        'PostgreSQL: its driver would refuse it at connect time. Did you mean "application_name"? Remove '
        'it for this alias, or set engine if a third-party engine reads it. The backend "postgresql" '
        "comes from DATABASE_URL."
    )


def test_a_socket_parameter_of_a_sqlite_url_is_refused() -> None:
    assert error("sqlite:///tmp/x.db?host=/tmp") == (
        'DATABASE_URL (alias "default"): host is not supported on SQLite. SQLite is a local file: there '
        'is no server, network, TLS or user. The backend "sqlite" comes from DATABASE_URL.'
    )


def test_a_driver_option_of_a_url_is_refused_for_the_other_backend_the_same_layer_chose(
    tmp_path: Path,
) -> None:
    with pytest.raises(DbConfigError) as caught:
        load_config(
            tmp_path,
            environ={},
            overrides={
                "databases": {"default": {"url": "mysql://db/shop?charset=utf8mb4", "backend": "postgresql"}}
            },
        )
    assert str(caught.value) == (
        'override: databases.default.url.charset (alias "default"): options.charset is not an option of '
        "PostgreSQL (it is an option of MySQL and MariaDB): its driver would refuse it at connect time. "
        "Remove it for this alias, or set engine if a third-party engine reads it. The backend "
        '"postgresql" comes from override: databases.default.backend.'
    )


def test_a_socket_parameter_beside_a_host_names_both_forms_to_write() -> None:
    assert error(f"postgres://app@db.internal/shop?unix_socket={SOCKET}") == (
        'DATABASE_URL (alias "default"): the URL has a host and a unix_socket query parameter. Write the '
        "socket directory as the host, percent-encoded: scheme://user@%2Fcloudsql%2FPROJECT%3AREGION"
        "%3AINSTANCE/name, or as ?host=/cloudsql/... with no host."
    )


def test_a_query_value_holding_a_scheme_leaves_the_list_of_hosts_alone() -> None:
    settings = entry("postgres://app@pg-a:5432,pg-b:5433/shop?application_name=a://b")
    assert (settings["HOST"], settings["PORT"], settings["OPTIONS"]["application_name"]) == (
        "pg-a,pg-b",
        "5432,5433",
        "a://b",
    )


def test_a_sqlite_path_with_a_comma_is_one_file_not_a_list_of_hosts() -> None:
    assert entry("sqlite:////tmp/app,v2.sqlite3")["NAME"] == "/tmp/app,v2.sqlite3"


@pytest.mark.parametrize(
    "url",
    [
        "postgres://app:p/w@db/shop?application_name=a://b",  # a scheme later in the URL
        "postgres:///app:s3cret@db/shop",  # a slash too many: the host part is empty
        "postgres://app:a/b/c@db/shop",  # two slashes in the password
    ],
)
def test_an_at_sign_after_the_host_part_is_refused_never_showing_the_password(url: str) -> None:
    assert error(url) == (
        'DATABASE_URL (alias "default"): the URL has an @ after the host part, so the user name or '
        "password holds a / ? or # that is not percent-encoded. Encode them (%2F, %3F, %23)."
    )


def test_a_bad_part_of_the_url_is_refused_naming_the_url_and_alias() -> None:
    assert error("postgres://db/sh%00op") == (
        'DATABASE_URL (alias "default"): name: contains a NUL character, which no database driver accepts.'
    )


def test_the_first_mariadb_url_of_a_process_registers_its_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    import dj_database_url

    from django_dbconfig.conf import database_urls

    # As in a fresh process: dj-database-url knows no mariadb:// and nothing registered it yet.
    schemes = {
        scheme: engine for scheme, engine in dj_database_url.ENGINE_SCHEMES.items() if scheme != "mariadb"
    }
    monkeypatch.setattr(dj_database_url, "ENGINE_SCHEMES", schemes)
    monkeypatch.setattr(database_urls, "_registered", False)
    settings = entry("mariadb://app@db.internal/shop")
    assert (settings["ENGINE"], settings["HOST"], settings["NAME"]) == (
        "django_dbconfig.backends.mysql",
        "db.internal",
        "shop",
    )
    assert entry("mariadb://app@db.internal/other")["NAME"] == "other"  # and only once
