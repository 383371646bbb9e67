"""Old ENGINE path of the postgresql engine: see django_dbconfig/engines/__init__.py."""
