"""Old ENGINE path of the mysql engine: see django_dbconfig/engines/__init__.py."""
