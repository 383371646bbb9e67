"""`django_dbconfig.engines.mysql` as an ENGINE: the engine of `django_dbconfig.backends.mysql`."""

from django_dbconfig.backends.mysql.base import DatabaseWrapper

__all__ = ["DatabaseWrapper"]
