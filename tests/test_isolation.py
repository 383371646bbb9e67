"""No shared state: configs built in different threads and tasks never see each other."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django_dbconfig import build_databases, load_config, override


def test_32_threads_with_their_own_environ_each_get_their_own_answer(project: Any) -> None:
    project.write_config({"databases": {"default": {"backend": "postgresql", "name": "app"}}})
    barrier = threading.Barrier(32)

    def build(index: int) -> tuple[str, str]:
        environ = {"DBCONFIG_DEFAULT_HOST": f"host-{index}", "DBCONFIG_DEFAULT_USER": f"user-{index}"}
        barrier.wait()
        settings = load_config(project.root, environ=environ).databases()["default"]
        return settings["HOST"], settings["USER"]

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(build, range(32)))
    assert results == [(f"host-{i}", f"user-{i}") for i in range(32)]


def test_override_blocks_in_threads_do_not_see_each_other(project: Any) -> None:
    inside = threading.Barrier(8)

    def build(index: int) -> tuple[str | None, str]:
        with override({"databases": {"default": {"name": f"thread-{index}.db"}}}):
            inside.wait()  # every thread is inside its own block now
            name = load_config(project.root, environ={}).databases()["default"]["NAME"]
        return None if index else "", name

    with ThreadPoolExecutor(max_workers=8) as pool:
        names = [name for _, name in pool.map(build, range(8))]
    assert names == [str(project.root / f"thread-{i}.db") for i in range(8)]
    assert load_config(project.root, environ={}).databases()["default"]["NAME"] == str(
        project.root / "db.sqlite3"
    )


def test_override_blocks_in_asyncio_tasks_do_not_see_each_other(project: Any) -> None:
    async def main() -> list[str]:
        inside, everyone_inside = 0, asyncio.Event()

        async def build(index: int) -> str:
            nonlocal inside
            with override({"databases.default.name": f"task-{index}.db"}):
                inside += 1
                if inside == 10:
                    everyone_inside.set()
                await everyone_inside.wait()  # all ten blocks are open at once
                return load_config(project.root, environ={}).databases()["default"]["NAME"]

        return list(await asyncio.gather(*(build(i) for i in range(10))))

    assert asyncio.run(main()) == [str(project.root / f"task-{i}.db") for i in range(10)]


def test_nested_override_blocks_unwind(project: Any) -> None:
    def name() -> str:
        return load_config(project.root, environ={}).databases()["default"]["NAME"]

    with override({"databases.default.name": "outer.db"}):
        with override({"databases.default.name": "inner.db"}):
            assert name().endswith("inner.db")
        assert name().endswith("outer.db")
    assert name().endswith("db.sqlite3")


def test_returned_dicts_are_independent_copies(project: Any) -> None:
    config = load_config(project.root, environ={})
    first = config.databases()
    first["default"]["NAME"] = "changed"
    assert config.databases()["default"]["NAME"] == str(project.root / "db.sqlite3")
    assert build_databases(project.root, environ={}) is not build_databases(project.root, environ={})


def test_nothing_reads_os_environ_when_environ_is_given(project: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("DBCONFIG_DEFAULT_NAME", "from-os-environ.db")
    assert load_config(project.root, environ={}).databases()["default"]["NAME"].endswith("db.sqlite3")
    assert load_config(project.root).databases()["default"]["NAME"].endswith("from-os-environ.db")


def test_importing_the_package_imports_no_driver_and_no_url_parser() -> None:
    code = (
        "import sys, django_dbconfig\n"
        "django_dbconfig.build_databases('/tmp', environ={})\n"
        "bad = [m for m in ('psycopg', 'psycopg2', 'MySQLdb', 'psycopg_pool', 'django.db.backends.postgresql',"
        " 'dj_database_url') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
