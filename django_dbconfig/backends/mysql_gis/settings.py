"""MySQL and MariaDB with GeoDjango render as without it; only the ENGINE differs."""

from __future__ import annotations

from django_dbconfig.backends.mysql.settings import MariaDB, MySQL

ENGINE = "django_dbconfig.backends.mysql_gis"
# `engine: mysql_gis`, GeoDjango's dotted path (what a mysqlgis:// URL gives) or ours.
ENGINE_NAMES = ("mysql_gis", "django.contrib.gis.db.backends.mysql", ENGINE)


class MySQLGIS(MySQL):
    engine = ENGINE
    earlier_engines = ()
    engine_names = ENGINE_NAMES


class MariaDBGIS(MariaDB):
    engine = ENGINE
    earlier_engines = ()
    engine_names = ENGINE_NAMES
