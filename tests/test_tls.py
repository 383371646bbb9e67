"""sslmode gives TLS at least as strong as asked on every backend, never less.

Checked through Django connections built from build_databases() output, against
throwaway servers with and without TLS (certificates from a trustme CA).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import django_connection

pytestmark = [pytest.mark.slow]


def settings_for(project: Any, server: Any, backend: str, **keys: Any) -> dict[str, Any]:
    project.write_config(
        {
            "databases": {
                "default": {
                    "backend": backend,
                    "host": server.host,
                    "port": server.port,
                    "user": server.user,
                    "password": server.password,
                    "name": server.dbname,
                    "connect_timeout": 3,
                    **keys,
                }
            }
        }
    )
    return project.databases()["default"]


def mariadb_cipher(connection: Any) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        return str(cursor.fetchone()[1])


def pg_ssl(connection: Any) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        return bool(cursor.fetchone()[0])


@pytest.mark.mariadb
@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
def test_mariadb_on_tls_for_every_mode_that_asks_for_it(
    project: Any, mariadb_tls_server: Any, tls_ca: Any, sslmode: str
) -> None:
    settings = settings_for(
        project, mariadb_tls_server, "mariadb", sslmode=sslmode, sslrootcert=str(tls_ca.ca_path)
    )
    with django_connection(settings) as connection:
        assert mariadb_cipher(connection) != ""


@pytest.mark.mariadb
@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
def test_mariadb_refuses_a_server_without_tls_when_tls_is_asked(
    project: Any, mariadb_plain_server: Any, tls_ca: Any, sslmode: str
) -> None:
    from django.db import OperationalError

    settings = settings_for(
        project, mariadb_plain_server, "mariadb", sslmode=sslmode, sslrootcert=str(tls_ca.ca_path)
    )
    with pytest.raises(OperationalError) as info:
        with django_connection(settings):
            pass
    assert "SSL" in str(info.value) or "TLS" in str(info.value)
    assert mariadb_plain_server.password not in str(info.value)


@pytest.mark.mariadb
@pytest.mark.parametrize("sslmode", ["verify-ca", "verify-full"])
def test_mariadb_verification_rejects_a_certificate_from_another_ca(
    project: Any, mariadb_tls_server: Any, tls_ca: Any, sslmode: str
) -> None:
    from django.db import OperationalError

    settings = settings_for(
        project, mariadb_tls_server, "mariadb", sslmode=sslmode, sslrootcert=str(tls_ca.wrong_ca_path)
    )
    with pytest.raises(OperationalError):
        with django_connection(settings):
            pass


@pytest.mark.mariadb
def test_mariadb_relative_ca_path_resolves_against_base_dir(
    project: Any, mariadb_tls_server: Any, tls_ca: Any
) -> None:
    project.write_file("certs/ca.pem", tls_ca.ca_path.read_text())
    settings = settings_for(
        project, mariadb_tls_server, "mariadb", sslmode="verify-full", sslrootcert="certs/ca.pem"
    )
    assert settings["OPTIONS"]["ssl"] == {"ca": str(project.root / "certs/ca.pem")}
    with django_connection(settings) as connection:
        assert mariadb_cipher(connection) != ""


@pytest.mark.postgresql
@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
def test_postgresql_on_tls_for_every_mode_that_asks_for_it(
    project: Any, pg_tls_server: Any, tls_ca: Any, sslmode: str
) -> None:
    settings = settings_for(
        project, pg_tls_server, "postgresql", sslmode=sslmode, sslrootcert=str(tls_ca.ca_path)
    )
    settings["HOST"] = "localhost"  # the certificate's name
    with django_connection(settings) as connection:
        assert pg_ssl(connection) is True


@pytest.mark.postgresql
def test_postgresql_refuses_a_server_without_tls_when_tls_is_asked(
    project: Any, pg_plain_server: Any
) -> None:
    from django.db import OperationalError

    settings = settings_for(project, pg_plain_server, "postgresql", sslmode="require")
    with pytest.raises(OperationalError, match="SSL"):
        with django_connection(settings):
            pass


@pytest.mark.postgresql
def test_postgresql_verify_full_rejects_another_host_name(
    project: Any, pg_server_factory: Any, tls_ca: Any
) -> None:
    from django.db import OperationalError

    server = pg_server_factory(tls=True, cert_hostname="db.example.invalid")
    settings = settings_for(
        project, server, "postgresql", sslmode="verify-full", sslrootcert=str(tls_ca.ca_path)
    )
    with pytest.raises(OperationalError, match=r"does not match host name|server certificate"):
        with django_connection(settings):
            pass


@pytest.mark.postgresql
@pytest.mark.mariadb
def test_sslmode_disable_stays_off_tls_even_where_the_server_offers_it(
    project: Any, pg_tls_server: Any, mariadb_tls_server: Any
) -> None:
    with django_connection(
        settings_for(project, pg_tls_server, "postgresql", sslmode="disable")
    ) as connection:
        assert pg_ssl(connection) is False
    with django_connection(
        settings_for(project, mariadb_tls_server, "mariadb", sslmode="disable")
    ) as connection:
        assert mariadb_cipher(connection) == ""
