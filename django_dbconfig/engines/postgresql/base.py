"""`django_dbconfig.engines.postgresql` as an ENGINE: the engine of `django_dbconfig.backends.postgresql`."""

from django_dbconfig.backends.postgresql.base import DatabaseWrapper

__all__ = ["DatabaseWrapper"]
