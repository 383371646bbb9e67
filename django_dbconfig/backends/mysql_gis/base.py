"""MySQL and MariaDB (mysqlclient) with GeoDjango's spatial parts on this project's engine."""

from __future__ import annotations

# Both imports raise ImproperlyConfigured with the fix when mysqlclient, or GeoDjango's
# libraries (GDAL, GEOS), are missing.
from django.contrib.gis.db.backends.mysql import base as geodjango_mysql

from django_dbconfig.backends.mysql import base as mysql


class DatabaseWrapper(mysql.DatabaseWrapper, geodjango_mysql.DatabaseWrapper):
    """GeoDjango's MySQL `DatabaseWrapper` (features, operations, introspection, schema
    editor) under this project's MySQL one: password_provider, the session settings that
    follow the server (MariaDB or MySQL), TLS guard, network_timeout on the socket, the
    socket health check, the ASGI request-end close and the read-only guard work as on
    MySQL/MariaDB.
    """
