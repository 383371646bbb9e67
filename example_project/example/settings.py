"""Settings of the example project: DATABASES comes from dbconfig.json and its layers.

By default the aliases are SQLite files next to this project (the replica reads
the file of default). With DBCONFIG_ENV=production they are PostgreSQL over
verified TLS, the replica inheriting everything of default but its host, with the
password from .secrets/dbconfig.json (see .secrets/dbconfig.json.example)
or DBCONFIG_DEFAULT_PASSWORD / DBCONFIG_DEFAULT_PASSWORD_FILE.
"""

from pathlib import Path

from django_dbconfig import build_databases

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "example-project-not-a-secret"  # noqa: S105 - a demo project
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_dbconfig",
    "shop",
    "reports",
]

DATABASES = build_databases(BASE_DIR)
DATABASE_ROUTERS = ["django_dbconfig.routers.DatabaseRouter"]
