"""PostGIS renders as PostgreSQL does; only the ENGINE differs."""

from __future__ import annotations

from django_dbconfig.backends.postgresql.settings import PostgreSQL


class PostGIS(PostgreSQL):
    """`engine: postgis`, GeoDjango's dotted path (what a postgis:// URL gives) or ours."""

    engine = "django_dbconfig.backends.postgis"
    earlier_engines = ()
    engine_names = ("postgis", "django.contrib.gis.db.backends.postgis", engine)
