"""dbcheck's output: the configured backend for an unreachable alias, MySQL's
"(using password: YES)" kept while the password itself is masked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from django_dbconfig.backends.base.probe import scrub
from tests.servers import free_port
from tests.test_dbcheck import configure, dbcheck, dbcheck_json

SECRET = "Zq-wrong-Password-42"


def test_an_unreachable_mariadb_alias_is_labelled_mariadb(tmp_path: Path) -> None:
    alias = {
        "backend": "mariadb",
        "host": "127.0.0.1",
        "port": free_port(),
        "name": "app",
        "user": "app",
        "password": SECRET,
        "connect_timeout": "2s",
    }
    status, result = dbcheck_json(configure(tmp_path, {"default": alias}))
    db = result["databases"][0]
    assert (status, db["vendor"], db["server_version"]) == (1, "mariadb", None)
    assert [p["id"] for p in db["problems"]] == ["dbconfig.E101"]


@pytest.mark.mariadb
def test_access_denied_keeps_using_password_yes_and_masks_the_password(
    tmp_path: Path, shared_mariadb: dict[str, Any]
) -> None:
    alias = {
        "backend": "mariadb",
        "host": shared_mariadb["host"],
        "port": shared_mariadb["port"],
        "name": shared_mariadb["database"],
        "user": "root",
        "password": SECRET,
        "connect_timeout": "3s",
    }
    status, output = dbcheck(configure(tmp_path, {"default": alias}), "--format", "json")
    assert status == 1
    assert SECRET not in output
    assert "(using password: YES)" in output and "Access denied for user 'root'@" in output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Access denied for user 'a'@'h' (using password: YES)",
            "Access denied for user 'a'@'h' (using password: YES)",
        ),
        (
            "Access denied for user 'a'@'h' (using password: NO)",
            "Access denied for user 'a'@'h' (using password: NO)",
        ),
        ("connection failed: password=hunter2 host=h", "connection failed: password=******** host=h"),
        ("password: hunter2)", "password: ********)"),
    ],
)
def test_scrub_keeps_yes_and_no_and_masks_values(text: str, expected: str) -> None:
    assert scrub(text, []) == expected
