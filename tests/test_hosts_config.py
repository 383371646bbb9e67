"""Several hosts for PostgreSQL (design: "Several hosts"): lists, URLs, variables, and refusals."""

from __future__ import annotations

from typing import Any

import pytest

from django_dbconfig import DbConfigError
from django_dbconfig.backends.base.settings import is_loopback

PG = {"backend": "postgresql", "name": "app"}


def entry(project: Any, environ: dict[str, str] | None = None) -> dict[str, Any]:
    databases = project.databases(environ)
    return {
        "HOST": databases["default"].get("HOST"),
        "PORT": databases["default"].get("PORT"),
        **{
            key: databases["default"]["OPTIONS"][key]
            for key in ("target_session_attrs", "load_balance_hosts")
            if key in databases["default"]["OPTIONS"]
        },
    }


def test_a_list_of_hosts_with_a_port_each_becomes_libpqs_lists(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {
                    **PG,
                    "host": ["pg-a.internal", "pg-b.internal"],
                    "port": [5432, 5433],
                    "target_session_attrs": "read-write",
                    "load_balance_hosts": "random",
                }
            }
        }
    )
    assert entry(project) == {
        "HOST": "pg-a.internal,pg-b.internal",
        "PORT": "5432,5433",
        "target_session_attrs": "read-write",
        "load_balance_hosts": "random",
    }
    assert project.values()["host"] == "pg-a.internal, pg-b.internal"


def test_a_url_with_several_hosts_and_ports(project: Any) -> None:
    url = "postgresql://u:s3cret-pw@pg-a:5432,pg-b:5433/app?target_session_attrs=primary"
    assert entry(project, {"DATABASE_URL": url}) == {
        "HOST": "pg-a,pg-b",
        "PORT": "5432,5433",
        "target_session_attrs": "primary",
    }
    assert project.databases({"DATABASE_URL": url})["default"]["PASSWORD"] == "s3cret-pw"


def test_a_url_with_several_hosts_and_one_port_for_all(project: Any) -> None:
    assert entry(project, {"DATABASE_URL": "postgresql://u@pg-a,pg-b/app"}) == {
        "HOST": "pg-a,pg-b",
        "PORT": 5432,
    }
    assert entry(project, {"DATABASE_URL": "postgresql://u@pg-a:6432,[::1]:6432/app"}) == {
        "HOST": "pg-a,::1",
        "PORT": 6432,
    }


def test_a_url_with_several_hosts_keeps_its_user_password_and_query_apart(project: Any) -> None:
    # An unencoded @ in the password, and a / in the query, do not move the host list.
    url = "postgresql://Xavier:p@ss@pg-a:5432,pg-b:5433/app?sslrootcert=/etc/ssl/ca.pem"
    default = project.databases({"DATABASE_URL": url})["default"]
    assert (default["HOST"], default["PORT"], default["USER"], default["PASSWORD"]) == (
        "pg-a,pg-b",
        "5432,5433",
        "Xavier",
        "p@ss",
    )
    assert default["OPTIONS"]["sslrootcert"] == "/etc/ssl/ca.pem"


def test_variables_take_comma_separated_hosts_and_ports(project: Any) -> None:
    project.write_config({"databases": {"default": PG}})
    environ = {
        "DBCONFIG_DEFAULT_HOST": "pg-a, pg-b",
        "DBCONFIG_DEFAULT_PORT": "5432,5433",
        "DBCONFIG_DEFAULT_TARGET_SESSION_ATTRS": "prefer-standby",
    }
    assert entry(project, environ) == {
        "HOST": "pg-a,pg-b",
        "PORT": "5432,5433",
        "target_session_attrs": "prefer-standby",
    }


@pytest.mark.parametrize(
    ("document", "environ", "message"),
    [
        pytest.param(
            {"databases": {"default": {**PG, "host": ["a", "b"], "port": [1, 2, 3]}}},
            {},
            'dbconfig.json: databases.default.port (alias "default"): port lists 3 ports for 2 hosts. '
            "Give one port for every host, or one port for all of them.",
            id="port_count",
        ),
        pytest.param(
            {},
            {"DATABASE_URL": "postgresql://u:s3cret-pw@pg-a:5432,pg-b/app"},
            'DATABASE_URL (alias "default"): the URL lists several hosts, but not every one has a name '
            "and, where ports are given, a port. Write scheme://user@host-a:5432,host-b:5433/name.",
            id="url_port_missing",
        ),
        pytest.param(
            {},
            {"DATABASE_URL": "mariadb://u:s3cret-pw@db-a,db-b/app"},
            'DATABASE_URL (alias "default"): host lists several hosts, but several hosts (libpq\'s '
            "failover) exist for PostgreSQL only: give MySQL/MariaDB one host, and put a proxy or a "
            "virtual IP in front of several servers.",
            id="mariadb_hosts",
        ),
        pytest.param(
            {
                "databases": {
                    "default": {"backend": "mysql", "name": "app", "target_session_attrs": "read-write"}
                }
            },
            {},
            'dbconfig.json: databases.default.target_session_attrs (alias "default"): target_session_attrs '
            "is not supported on MySQL. Several hosts (libpq's failover) exist for PostgreSQL only: give "
            "MySQL/MariaDB one host, and put a proxy or a virtual IP in front of several servers. "
            'The backend "mysql" comes from dbconfig.json: databases.default.backend.',
            id="mysql_target_session_attrs",
        ),
        pytest.param(
            {"databases": {"default": {"backend": "sqlite", "name": "db.sqlite3", "host": ["a", "b"]}}},
            {},
            'dbconfig.json: databases.default.host (alias "default"): host is not supported on SQLite. '
            "SQLite is a local file: there is no server, network, TLS or user. "
            'The backend "sqlite" comes from dbconfig.json: databases.default.backend.',
            id="sqlite_hosts",
        ),
        pytest.param(
            {"databases": {"default": {**PG, "target_session_attrs": "writable"}}},
            {},
            'dbconfig.json: databases.default.target_session_attrs (alias "default"): target_session_attrs: '
            '"writable" is not one of "any", "read-write", "read-only", "primary", "standby" or '
            '"prefer-standby".',
            id="bad_choice",
        ),
        pytest.param(
            {"databases": {"default": {**PG, "host": ["a", ""]}}},
            {},
            'dbconfig.json: databases.default.host (alias "default"): host: expected every host of the list '
            'to be a non-empty string, e.g. ["pg-a", "pg-b"].',
            id="empty_host",
        ),
    ],
)
def test_bad_host_lists_name_source_alias_and_fix(
    project: Any, document: Any, environ: dict[str, str], message: str
) -> None:
    project.write_config(document)
    with pytest.raises(DbConfigError) as caught:
        project.load(environ)
    assert str(caught.value) == message
    assert "s3cret-pw" not in str(caught.value)


def test_a_replica_does_not_inherit_the_primarys_host_list_or_session_attrs(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {**PG, "host": ["pg-a", "pg-b"], "target_session_attrs": "read-write"},
                "replica": {"host": "pg-c", "replica_of": "default"},
            }
        }
    )
    replica = project.databases()["replica"]
    assert [replica["HOST"], "target_session_attrs" in replica["OPTIONS"]] == ["pg-c", False]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("", True),
        ("localhost", True),
        ("/var/run/postgresql", True),  # a Unix socket directory
        ("127.0.0.1", True),
        ("[::1]", True),
        ("::1", True),
        ("db.internal", False),
        ("10.0.0.5", False),
        ("[2001:db8::1]", False),
        ("127.0.0.1X", False),  # a mistyped address is a host name, looked up elsewhere
    ],
)
def test_a_host_is_loopback_when_it_never_leaves_the_machine(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
