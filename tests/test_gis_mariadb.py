"""GeoDjango on the machine's MariaDB through this project's MySQL GIS engine.

A project with a GeoDjango model migrates and answers a spatial query in a subprocess, as
a user's project would; in this process the engine shows network_timeout on the socket
and the read-only guard, as the plain MySQL engine does.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from django_dbconfig import build_databases
from tests.conftest import django_connection, query_one
from tests.test_gis_postgis import SETTINGS, _geodjango_libraries, run_django

pytestmark = pytest.mark.mariadb
__all__ = ["_geodjango_libraries"]  # the module's autouse fixture: fail in CI, skip elsewhere

SPATIAL_QUERIES = """\
import json
from django.contrib.gis.geos import Point, Polygon
from django.db import connections
from tests.apps.geo.models import Area, Place

Place.objects.create(name="Lausanne", location=Point(6.6323, 46.5197, srid=4326))
Place.objects.create(name="Zurich", location=Point(8.5417, 47.3769, srid=4326))
Area.objects.create(name="Lake Geneva", boundary=Polygon.from_bbox((6.1, 46.2, 6.95, 46.55)))
lake = Area.objects.get(name="Lake Geneva").boundary
print(json.dumps({
    "engine": type(connections["default"]).__module__,
    "inside": [place.name for place in Place.objects.filter(location__within=lake)],
    "containing": list(Area.objects.filter(boundary__contains=Point(6.6323, 46.5197, srid=4326)).values_list("name", flat=True)),
}))
"""


def mariadb_root(shared: dict[str, Any]) -> Any:
    import MySQLdb

    return MySQLdb.connect(**{**shared, "database": "mysql"}, connect_timeout=5, autocommit=True)


@pytest.fixture
def geo_database(shared_mariadb: dict[str, Any]) -> Iterator[str]:
    name = f"geo_{uuid.uuid4().hex[:10]}"
    connection = mariadb_root(shared_mariadb)
    try:
        connection.cursor().execute(f"CREATE DATABASE `{name}`")
        yield name
    finally:
        connection.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        connection.close()


def alias(shared: dict[str, Any], name: str, **keys: Any) -> dict[str, Any]:
    return {
        "backend": "mariadb",
        "engine": "mysql_gis",
        "host": shared["host"],
        "port": shared["port"],
        "user": shared["user"],
        "name": name,
        "sslmode": "disable",
        "conn_max_age": 0,
        **keys,
    }


def test_a_geodjango_project_migrates_and_queries_mariadb(
    tmp_path: Path, shared_mariadb: dict[str, Any], geo_database: str
) -> None:
    (tmp_path / "dbconfig.json").write_text(
        json.dumps({"databases": {"default": alias(shared_mariadb, geo_database)}})
    )
    (tmp_path / "settings.py").write_text(SETTINGS)
    migrated = run_django(tmp_path, "migrate", "--noinput", "geo")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    cursor = mariadb_root(shared_mariadb).cursor()
    cursor.execute(
        "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = %s AND DATA_TYPE IN ('point', 'polygon') ORDER BY 1",
        [geo_database],
    )
    assert cursor.fetchall() == (("geo_area", "boundary", "polygon"), ("geo_place", "location", "point"))

    queried = run_django(tmp_path, "shell", "-c", SPATIAL_QUERIES)
    assert queried.returncode == 0, queried.stdout + queried.stderr
    assert json.loads(queried.stdout.splitlines()[-1]) == {
        "engine": "django_dbconfig.backends.mysql_gis.base",
        "inside": ["Lausanne"],
        "containing": ["Lake Geneva"],
    }


def test_the_mysql_gis_engine_keeps_network_timeout_and_the_read_only_guard(
    tmp_path: Path, shared_mariadb: dict[str, Any], geo_database: str
) -> None:
    from django_dbconfig.routers.readonly import ReadOnlyDatabaseError

    keys = alias(shared_mariadb, geo_database, network_timeout="20s", read_only=True)
    entry = dict(build_databases(tmp_path, environ={}, overrides={"databases": {"default": keys}})["default"])
    assert entry["ENGINE"] == "django_dbconfig.backends.mysql_gis"
    with django_connection(entry) as connection:
        sock = socket.socket(fileno=connection.connection.fileno())
        try:
            timeout = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
        finally:
            sock.detach()
        assert timeout == 20000
        assert query_one(connection, "SELECT @@session.tx_read_only") == 1
        assert query_one(
            connection, "SELECT ST_AsText(ST_Centroid(ST_GeomFromText('POLYGON((0 0,2 0,2 2,0 2,0 0))')))"
        ) == ("POINT(1 1)")
        with pytest.raises(ReadOnlyDatabaseError, match="database alias 'default' is read-only"):
            query_one(connection, "CREATE TABLE written (id int)")
