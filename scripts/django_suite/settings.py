"""Settings for Django's tests/runtests.py: two aliases rendered by build_databases().

Read from the environment that scripts/django-suite.sh sets for each run:
DJANGO_SUITE_SERVER (postgresql or mariadb), DJANGO_SUITE_ENGINE (empty for the
engine build_databases() renders, or a Django engine to use instead) and
DJANGO_SUITE_RUN (a name unique to this run, so its test databases collide
with nobody's); DJANGO_SUITE_KEYS, optional, is a JSON object of alias keys
added to both aliases.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django_dbconfig import build_databases

URLS = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/{name}",
    "mariadb": "mariadb://root@127.0.0.1:3306/{name}",
}


def _aliases() -> dict[str, Any]:
    server, engine, run = (os.environ[f"DJANGO_SUITE_{key}"] for key in ("SERVER", "ENGINE", "RUN"))
    databases: dict[str, Any] = {}
    for alias in ("default", "other"):
        databases[alias] = {"url": URLS[server].format(name=f"djsuite_{run}_{alias}")}
        databases[alias] |= json.loads(os.environ.get("DJANGO_SUITE_KEYS", "{}"))
        if engine:
            databases[alias]["engine"] = engine
    return databases


# This folder has no dbconfig.json or .secrets: only the overrides count.
DATABASES = build_databases(Path(__file__).parent, environ={}, overrides={"databases": _aliases()})

SECRET_KEY = "django_tests_secret_key"  # noqa: S105 (a test run's key, as in Django's own)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False
TEST_RUNNER = "django_suite.runner.RecordingRunner"
