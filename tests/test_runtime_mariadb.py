"""Runtime databases on MariaDB: removal ends the sessions other threads hold (mysqlclient, no lock to take)."""

from __future__ import annotations

import gc
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connections

from django_dbconfig import add_database, remove_database

pytestmark = pytest.mark.mariadb


@pytest.fixture
def mariadb_database(
    shared_mariadb: dict[str, Any], built_config: Callable[[dict[str, Any]], Any]
) -> Iterator[str]:
    """A fresh database on the machine's MariaDB, the project's `default` on its `test` database."""
    import MySQLdb

    name = f"dbconfig_rt_{uuid.uuid4().hex[:10]}"
    server = {
        "backend": "mariadb",
        "host": shared_mariadb["host"],
        "port": shared_mariadb["port"],
        "user": "root",
    }
    built_config(
        {"databases": {"default": {**server, "name": "test", "sslmode": "disable", "conn_max_age": 600}}}
    )
    admin = MySQLdb.connect(**shared_mariadb, connect_timeout=5)
    admin.autocommit(True)
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def sessions(shared_mariadb: dict[str, Any], database: str) -> int:
    import MySQLdb

    with MySQLdb.connect(**shared_mariadb, connect_timeout=5) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s", [database])
        return int(cursor.fetchone()[0])


def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def current_database() -> str:
    with connections["tenant"].cursor() as cursor:
        cursor.execute("SELECT DATABASE()")
        return str(cursor.fetchone()[0])


def test_removal_ends_the_sessions_of_every_thread(
    shared_mariadb: dict[str, Any], mariadb_database: str
) -> None:
    add_database("tenant", {"name": mariadb_database}, like="default")
    assert type(connections["tenant"]).__module__ == "django_dbconfig.backends.mysql.base"
    arrived = threading.Barrier(3)

    def use_and_stay() -> str:
        name = current_database()
        arrived.wait(timeout=30)
        return name

    gc.disable()
    try:
        with ThreadPoolExecutor(max_workers=3) as idle:
            assert [f.result(timeout=30) for f in [idle.submit(use_and_stay) for _ in range(3)]] == [
                mariadb_database
            ] * 3
            assert wait_for(lambda: sessions(shared_mariadb, mariadb_database) == 3)
            remove_database("tenant")
            assert wait_for(lambda: sessions(shared_mariadb, mariadb_database) == 0, seconds=5)

            # The same name on the `test` database: the worker threads get the new settings.
            add_database("tenant", {}, like="default")
            assert (
                idle.submit(lambda: connections["tenant"].settings_dict["NAME"]).result(timeout=30) == "test"
            )
            remove_database("tenant")
    finally:
        gc.enable()
