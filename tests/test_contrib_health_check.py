"""django_dbconfig.contrib.health_check.Databases inside django-health-check 4's own view."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.test import Client

if django.VERSION < (5, 2):
    # Not a missing server: django-health-check 4 requires Django 5.2 (tox installs it there).
    pytest.skip("django-health-check 4 needs Django 5.2 or later", allow_module_level=True)

from django_dbconfig import build_databases
from django_dbconfig.contrib.health_check import Databases
from django_dbconfig.health import status
from tests.helpers import registered

PASSWORD = "s3cret-contrib-pw"


@pytest.fixture(autouse=True)
def _urls(settings: Any, django_db_blocker: Any) -> Iterator[None]:
    settings.ROOT_URLCONF = "tests.health_check_urls"
    settings.MIDDLEWARE = []
    settings.DBCONFIG_HEALTH_CACHE_SECONDS = 0
    status.forget()
    with django_db_blocker.unblock():
        yield
    status.forget()


def entry(tmp_path: Path, url: str) -> dict[str, Any]:
    return dict(build_databases(tmp_path, environ={"DATABASE_URL": url})["default"])


def test_the_check_is_a_dataclass_whose_label_names_its_aliases() -> None:
    assert repr(Databases(aliases=("default",))) == "Databases(aliases=('default',))"
    assert Databases().labels == {"check": "Databases", "aliases": "()"}


@pytest.mark.postgresql
def test_every_alias_passes_and_a_down_one_fails_by_name_only(
    tmp_path: Path, shared_postgres: dict[str, Any]
) -> None:
    client = Client()
    with registered({"pg": entry(tmp_path, "postgresql://postgres@127.0.0.1:5432/test")}):
        response = client.get("/health/?format=json")
        assert (response.status_code, json.loads(response.content)) == (200, {"Databases(aliases=())": "OK"})
        with registered({"down": entry(tmp_path, f"postgresql://app:{PASSWORD}@127.0.0.1:1/app")}):
            response = client.get("/health/?format=json")
            narrowed = client.get("/health/analytics/?format=json")
    assert (response.status_code, json.loads(response.content)) == (
        500,
        {"Databases(aliases=())": "Unavailable: Database unavailable: down"},
    )
    assert PASSWORD not in response.content.decode()
    assert (narrowed.status_code, json.loads(narrowed.content)) == (200, {"Databases(aliases=('pg',))": "OK"})


def test_an_unknown_alias_fails_the_check() -> None:
    response = Client().get("/health/analytics/?format=json")
    assert (response.status_code, json.loads(response.content)) == (
        500,
        {"Databases(aliases=('pg',))": "Unavailable: No such database alias: pg"},
    )
