"""GeoDjango on a real PostGIS through this project's PostGIS engine, with every feature.

A project with a GeoDjango model (tests/apps/geo, installed by tests/gis_settings.py)
migrates and answers spatial queries over TLS with a password provider, in a subprocess
as a user's project would; in this process the engine shows the features of the plain
PostgreSQL engine: session settings behind PgBouncer in session mode, the socket health
check, the ASGI request-end close, network_timeout on the socket, the read-only guard.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from django_dbconfig import build_databases
from tests.conftest import django_connection, query_one
from tests.pgbouncer import Pooled
from tests.servers import APP_PASSWORD, PostgresServer, server_unavailable
from tests.test_dbcheck import by_alias, dbcheck, dbcheck_json

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = """\
from pathlib import Path

from tests.gis_settings import *  # noqa: F403

from django_dbconfig import build_databases

DATABASES = build_databases(Path(__file__).resolve().parent)
"""
# In the project's process: a GeoDjango model written and read with spatial lookups.
SPATIAL_QUERIES = """\
import json
from django.contrib.gis.geos import Point, Polygon
from django.contrib.gis.measure import D
from django.db import connection, connections
from tests.apps.geo.models import Area, Place

Place.objects.create(name="Lausanne", location=Point(6.6323, 46.5197, srid=4326))
Place.objects.create(name="Geneva", location=Point(6.1432, 46.2044, srid=4326))
Place.objects.create(name="Zurich", location=Point(8.5417, 47.3769, srid=4326))
Area.objects.create(name="Lake Geneva", boundary=Polygon.from_bbox((6.1, 46.2, 6.95, 46.55)))
near = Place.objects.filter(location__distance_lte=(Point(6.63, 46.52, srid=4326), D(km=70))).order_by("name")
lake = Area.objects.get(name="Lake Geneva").boundary
with connection.cursor() as cursor:
    cursor.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    tls = cursor.fetchone()[0]
    cursor.execute("SELECT current_user")
    user = cursor.fetchone()[0]
print(json.dumps({
    "engine": type(connections["default"]).__module__,
    "near": [place.name for place in near],
    "inside": sorted(place.name for place in Place.objects.filter(location__within=lake)),
    "areas_containing_geneva": list(
        Area.objects.filter(boundary__contains=Point(6.1432, 46.2044, srid=4326)).values_list("name", flat=True)
    ),
    "tls": tls,
    "user": user,
    "password_in_settings": any(db.get("PASSWORD") for db in __import__("django.conf").conf.settings.DATABASES.values()),
}))
"""


def app_password(alias: str, settings: Mapping[str, Any]) -> str:
    """The password provider the configs below name: the throwaway servers' app password."""
    return APP_PASSWORD


@pytest.fixture(scope="module", autouse=True)
def _geodjango_libraries() -> None:
    """GeoDjango needs GDAL and GEOS (scripts/setup.sh installs them): fail in CI, skip elsewhere."""
    try:
        from django.contrib.gis.gdal import gdal_version
        from django.contrib.gis.geos import geos_version

        gdal_version(), geos_version()
    except Exception as exc:
        server_unavailable("GeoDjango's libraries (GDAL, GEOS)", exc)


def with_postgis(server: PostgresServer) -> Iterator[str]:
    """A fresh database owned by the app role, with the postgis extension (made by the superuser)."""
    name = f"geo_{uuid.uuid4().hex[:10]}"
    server.psql(f'CREATE DATABASE "{name}" OWNER "{server.user}"', dbname="postgres")
    try:
        server.psql("CREATE EXTENSION postgis", dbname=name)
        yield name
    finally:
        server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', dbname="postgres")


@pytest.fixture
def tls_postgis(pg_tls_server: PostgresServer) -> Iterator[str]:
    yield from with_postgis(pg_tls_server)


@pytest.fixture
def pooled_postgis(through_session_pooler: Pooled) -> Iterator[Pooled]:
    through_session_pooler.server.psql("CREATE EXTENSION postgis", dbname=through_session_pooler.dbname)
    yield through_session_pooler


def run_django(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DBCONFIG_", "PG"))},
        "DJANGO_SETTINGS_MODULE": "settings",
        "PYTHONPATH": os.pathsep.join([str(project), str(ROOT)]),
    }
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def tls_alias(server: PostgresServer, name: str, **keys: Any) -> dict[str, Any]:
    assert server.ca_path is not None
    return {
        "engine": "postgis",
        "host": "localhost",
        "port": server.port,
        "name": name,
        "user": server.user,
        "sslmode": "verify-full",
        "sslrootcert": str(server.ca_path),
        "password_provider": "tests.test_gis_postgis.app_password",
        "conn_max_age": 0,
        **keys,
    }


def test_a_geodjango_project_migrates_and_queries_postgis_over_tls_with_a_password_provider(
    tmp_path: Path, pg_tls_server: PostgresServer, tls_postgis: str
) -> None:
    (tmp_path / "dbconfig.json").write_text(
        json.dumps({"databases": {"default": tls_alias(pg_tls_server, tls_postgis)}})
    )
    (tmp_path / "settings.py").write_text(SETTINGS)

    migrated = run_django(tmp_path, "migrate", "--noinput", "geo")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "Applying geo.0001_initial... OK" in migrated.stdout
    # The columns are PostGIS geometries, as the server describes them.
    columns = pg_tls_server.psql(
        "SELECT f_table_name, f_geometry_column, type, srid FROM geometry_columns ORDER BY 1",
        dbname=tls_postgis,
    )
    assert columns == [("geo_area", "boundary", "POLYGON", 4326), ("geo_place", "location", "POINT", 4326)]

    queried = run_django(tmp_path, "shell", "-c", SPATIAL_QUERIES)
    assert queried.returncode == 0, queried.stdout + queried.stderr
    # Django 5.2+ prints how many names its shell imported before the output.
    assert json.loads(queried.stdout.splitlines()[-1]) == {
        "engine": "django_dbconfig.backends.postgis.base",
        "near": ["Geneva", "Lausanne"],
        "inside": ["Geneva", "Lausanne"],
        "areas_containing_geneva": ["Lake Geneva"],
        "tls": True,
        "user": pg_tls_server.user,
        "password_in_settings": False,
    }

    checked = run_django(tmp_path, "dbcheck", "--format", "json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert APP_PASSWORD not in checked.stdout + checked.stderr
    report = by_alias(json.loads(checked.stdout))["default"]
    assert (report["ok"], report["problems"], report["tls"]["in_use"]) == (True, [], True)


def test_a_postgis_url_selects_the_postgis_engine_and_dbcheck_proves_tls(
    tmp_path: Path, pg_tls_server: PostgresServer, tls_postgis: str
) -> None:
    assert pg_tls_server.ca_path is not None
    url = (
        f"postgis://{pg_tls_server.user}@localhost:{pg_tls_server.port}/{tls_postgis}"
        f"?sslmode=verify-full&sslrootcert={pg_tls_server.ca_path}"
    )
    databases = build_databases(
        tmp_path,
        environ={},
        overrides={
            "databases": {"default": {"url": url, "password_provider": "tests.test_gis_postgis.app_password"}}
        },
    )
    assert databases["default"]["ENGINE"] == "django_dbconfig.backends.postgis"
    status, result = dbcheck_json(databases)
    geo = by_alias(result)["default"]
    assert (status, geo["problems"], geo["tls"]["in_use"]) == (0, [], True)
    with django_connection(dict(databases["default"])) as connection:
        assert connection.ops.spatial_version >= (3, 0, 0)
        assert query_one(connection, "SELECT ST_AsText(ST_Centroid('POLYGON((0 0,2 0,2 2,0 2,0 0))'))") == (
            "POINT(1 1)"
        )


def test_postgis_behind_a_session_pooler_gets_its_session_settings_and_its_password(
    tmp_path: Path, pooled_postgis: Pooled
) -> None:
    keys = pooled_postgis.alias(
        engine="postgis",
        statement_timeout="7s",
        search_path=["public"],
        password=None,
        password_provider="tests.test_gis_postgis.app_password",
    )
    databases = build_databases(tmp_path, environ={}, overrides={"databases": {"default": keys}})
    entry = dict(databases["default"])
    assert entry["ENGINE"] == "django_dbconfig.backends.postgis"
    assert "PASSWORD" not in entry
    with django_connection(entry) as connection:
        # Sent as SET by the engine: PgBouncer would refuse them as a startup parameter.
        assert query_one(connection, "SHOW statement_timeout") == "7s"
        assert query_one(connection, "SHOW search_path") == '"public"'
        assert query_one(connection, "SELECT ST_X(ST_GeomFromText('POINT(6.5 46.5)'))") == 6.5
    status, result = dbcheck_json(databases)
    assert (status, by_alias(result)["default"]["problems"]) == (0, [])


def test_postgis_alias_keeps_the_socket_check_asgi_close_network_timeout_and_read_only_guard(
    tmp_path: Path, pg_tls_server: PostgresServer, tls_postgis: str
) -> None:
    from django.core import signals
    from django.core.handlers.asgi import ASGIHandler

    from django_dbconfig.backends.base.health import Verdict
    from django_dbconfig.routers.readonly import ReadOnlyDatabaseError

    keys = tls_alias(pg_tls_server, tls_postgis, conn_max_age=60, network_timeout="20s", read_only=True)
    entry = dict(build_databases(tmp_path, environ={}, overrides={"databases": {"default": keys}})["default"])
    with django_connection(entry) as connection:
        # network_timeout: the TCP options on the connection's socket.
        sock = socket.socket(fileno=connection.connection.pgconn.socket)
        try:
            timeout = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
        finally:
            sock.detach()
        assert timeout == 20000
        # The read-only guard: the server refuses, the error names the alias.
        with pytest.raises(ReadOnlyDatabaseError, match="database alias 'default' is read-only"):
            query_one(connection, "CREATE TABLE geo_written (id int)")
        # The socket health check: idle and healthy, then dead once the server ends the session.
        assert connection.socket_verdict() is Verdict.HEALTHY
        pid = query_one(connection, "SELECT pg_backend_pid()")
        pg_tls_server.psql(f"SELECT pg_terminate_backend({pid})", dbname="postgres")
        for _ in range(50):
            if connection.socket_verdict() is Verdict.DEAD:
                break
            __import__("time").sleep(0.05)
        assert connection.socket_verdict() is Verdict.DEAD
        connection.close()

        # The ASGI request-end close: a request's connection is closed when it ends.
        signals.request_started.send(sender=ASGIHandler, scope={})
        assert query_one(connection, "SELECT 1") == 1
        assert connection.connection is not None
        signals.request_finished.send(sender=ASGIHandler)
        assert connection.connection is None


def test_apply_settings_writes_the_role_defaults_of_a_postgis_alias_behind_a_transaction_pooler(
    tmp_path: Path, through_transaction_pooler: Pooled
) -> None:
    pooled = through_transaction_pooler
    pooled.server.psql("CREATE EXTENSION postgis", dbname=pooled.dbname)
    keys = pooled.alias(engine="postgis", statement_timeout="9s")
    databases = build_databases(tmp_path, environ={}, overrides={"databases": {"default": keys}})
    status, before = dbcheck_json(databases)
    assert (status, [p["id"] for p in by_alias(before)["default"]["problems"]]) == (1, ["dbconfig.E115"])

    # Before the fix, --apply-settings skipped it ("postgresql" is not in its ENGINE), and its
    # connection with the migrate keys was rendered with ENGINE "postgis".
    dbcheck(databases, "--apply-settings")
    stored = pooled.server.psql(
        "SELECT unnest(setconfig) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
        "WHERE d.datname = %s",
        [pooled.dbname],
        dbname="postgres",
    )
    assert stored == [("statement_timeout=9000ms",)]
    status, after = dbcheck_json(databases)
    assert (status, by_alias(after)["default"]["problems"]) == (0, [])
