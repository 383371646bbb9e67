"""PostGIS (psycopg 3): this project's PostgreSQL engine with GeoDjango's spatial parts."""

from __future__ import annotations

# Both imports raise ImproperlyConfigured with the fix when psycopg, or GeoDjango's
# libraries (GDAL, GEOS), are missing.
from django.contrib.gis.db.backends.postgis import base as geodjango_postgis

from django_dbconfig.backends.postgresql import base as postgresql


class DatabaseWrapper(postgresql.DatabaseWrapper, geodjango_postgis.DatabaseWrapper):
    """GeoDjango's PostGIS `DatabaseWrapper` (features, operations, introspection, schema
    editor, geometry adapters on each new connection) under this project's PostgreSQL one:
    password_provider, session settings behind a pooler, the socket health check, the
    ASGI request-end close, network_timeout and the read-only guard work as on PostgreSQL.

    The method resolution order puts this project's mixins first, then GeoDjango's
    wrapper, then Django's PostgreSQL wrapper: a new connection gets its password here,
    its geometry types registered by GeoDjango, and its session settings last.
    """
