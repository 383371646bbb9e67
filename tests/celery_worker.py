"""A real Celery worker (Redis broker) on a small Django project, and the task streams the tests send it.

Used by tests/test_celery.py (which asserts) and benchmarks/tasks.py (which prints the
figures with the hooks on and off). Celery's own Django fix-up is turned off in the
worker's app (`fixups=[]`), so what is measured is `django_dbconfig.contrib.celery`
alone; `CELERY_TEST_HOOKS=off` leaves it unconnected.

The project has three aliases on one throwaway PostgreSQL: `default` (persistent
connections), `replica` (a replica of `default`, for read-your-writes pins) and
`pooled` (`pool`, max_size 2, timeout 3 s; Django 5.1+).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import django

BROKER = "redis://127.0.0.1:6379/0"
HAS_POOL = django.VERSION >= (5, 1)  # Django's pool

SETTINGS = """
from pathlib import Path

from django_dbconfig import build_databases

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "celery-test-not-secret"
INSTALLED_APPS = ["django.contrib.contenttypes", "django_dbconfig"]
USE_TZ = True
DATABASES = build_databases(BASE_DIR)
DATABASE_ROUTERS = ["django_dbconfig.routers.DatabaseRouter"]
"""

WORKER = """
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "celeryproject.settings")
import django

django.setup()

from celery import Celery
from django.contrib.contenttypes.models import ContentType
from django.db import connections, router

from django_dbconfig.routers import written_primaries

broker = os.environ["CELERY_TEST_BROKER"]
app = Celery("celeryproject", broker=broker, backend=broker, fixups=[])
app.conf.task_default_queue = os.environ["CELERY_TEST_QUEUE"]
app.conf.broker_connection_retry_on_startup = True
app.conf.worker_hijack_root_logger = False
app.conf.worker_prefetch_multiplier = 1
if os.environ.get("CELERY_TEST_HOOKS", "on") == "on":
    import django_dbconfig.contrib.celery

    django_dbconfig.contrib.celery.connect(app)


def session(alias, sleep=0):
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), pg_sleep(%s)", [sleep])
        return cursor.fetchone()[0]


@app.task
def write():
    pinned = sorted(written_primaries())
    alias = router.db_for_write(ContentType)
    return {"alias": alias, "pinned": pinned, "session": session(alias), "worker": os.getpid()}


@app.task
def read():
    pinned = sorted(written_primaries())
    alias = router.db_for_read(ContentType)
    return {"alias": alias, "pinned": pinned, "session": session(alias), "worker": os.getpid()}


@app.task
def primary():
    return {"session": session("default"), "worker": os.getpid()}


@app.task
def pooled(seconds):
    return {"session": session("pooled", seconds), "worker": os.getpid()}
"""


def write_project(root: Path, url: str) -> None:
    package = root / "celeryproject"
    package.mkdir(parents=True, exist_ok=True)
    for name, text in (("__init__.py", ""), ("settings.py", SETTINGS), ("worker.py", WORKER)):
        (package / name).write_text(textwrap.dedent(text))
    aliases: dict[str, Any] = {
        "default": {"url": url, "conn_max_age": 600},
        "replica": {"url": url, "replica_of": "default"},
    }
    if HAS_POOL:
        aliases["pooled"] = {"url": url, "pool": {"min_size": 0, "max_size": 2, "timeout": 3}}
    (root / "dbconfig.json").write_text(json.dumps({"databases": aliases}))


class Worker:
    """A started Celery worker, and a client app that sends it tasks by name."""

    def __init__(self, client: Any, queue: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.client, self.queue, self.process, self.log = client, queue, process, log

    def send(self, name: str, *args: Any) -> Any:
        return self.client.send_task(f"celeryproject.worker.{name}", args=args, queue=self.queue)

    def run(self, name: str, *args: Any, timeout: float = 60) -> Any:
        """The task's result, or the exception it raised (as its class name and text)."""
        result = self.send(name, *args)
        value = result.get(timeout=timeout, propagate=False)
        if result.failed():
            return f"{type(value).__name__}: {value}"
        return value


@contextmanager
def celery_worker(
    root: Path, *, url: str, pool: str, concurrency: int, hooks: bool = True
) -> Iterator[Worker]:
    """Start `celery worker` on the project in `root`; stop it afterwards."""
    from celery import Celery

    write_project(root, url)
    queue = f"dbconfig-test-{uuid.uuid4().hex[:10]}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DBCONFIG_", "PG", "CELERY")) and "DATABASE_URL" not in k
    }
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(Path(__file__).resolve().parent.parent)])
    env.update(CELERY_TEST_BROKER=BROKER, CELERY_TEST_QUEUE=queue, CELERY_TEST_HOOKS="on" if hooks else "off")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = root / "celery.log"
    command = [
        sys.executable, "-m", "celery", "-A", "celeryproject.worker", "worker", "--pool", pool,
        "--concurrency", str(concurrency), "--queues", queue, "--hostname", f"{queue}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    client = Celery("client", broker=BROKER, backend=BROKER)
    worker = Worker(client, queue, process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"celery exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                worker.send("primary").get(timeout=5)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the worker never answered:\n{log.read_text()[-3000:]}") from None
        yield worker
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
        client.close()


@dataclass
class Streams:
    """What the task streams saw."""

    # read-your-writes: tasks sent after a write (each a write then a read), and those that
    # started with an earlier task's pin (whichever process or thread ran the write: with
    # more tasks than threads, most run where a write ran before)
    tasks: int = 0
    pinned_tasks: int = 0
    # a server restart: outcomes of the tasks before, during and after the outage
    before_restart: list[Any] = field(default_factory=list)
    during_outage: list[Any] = field(default_factory=list)
    after_restart: list[Any] = field(default_factory=list)
    # pooled tasks sent at once, and those that failed
    pooled: int = 0
    pooled_failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        first = self.after_restart[0] if self.after_restart else None
        failed_after = sum(1 for outcome in self.after_restart if isinstance(outcome, str))
        return (
            f"pins leaked into {self.pinned_tasks} of {self.tasks} tasks; restart: first task after "
            f"{'failed' if isinstance(first, str) else 'succeeded'}, {failed_after} of {len(self.after_restart)} "
            f"failed after it; pooled: {len(self.pooled_failed)} of {self.pooled} failed"
        )


def pin_stream(worker: Worker, streams: Streams, *, pairs: int = 10, check: bool = True) -> None:
    """A write, then a read, one at a time: each should start unpinned, and the read go to the replica."""
    for _ in range(pairs):
        wrote = worker.run("write")
        read = worker.run("read")
        if check:
            assert isinstance(wrote, dict) and wrote["alias"] == "default", wrote
            assert isinstance(read, dict), read
        for outcome in (wrote, read):
            if isinstance(outcome, dict):
                streams.tasks += 1
                streams.pinned_tasks += bool(outcome["pinned"])
        if check and isinstance(read, dict) and read["alias"] != "replica" and not read["pinned"]:
            raise AssertionError(f"an unpinned read went to {read['alias']}: {read}")


def restart_stream(worker: Worker, server: Any, streams: Streams, *, after: int = 6) -> None:
    """Tasks on `default`, the server stopped, two tasks, the server started, more tasks."""
    streams.before_restart = [worker.run("primary") for _ in range(4)]
    server.stop()
    streams.during_outage = [worker.run("primary") for _ in range(2)]
    server.start()
    streams.after_restart = [worker.run("primary") for _ in range(after)]


def pooled_stream(worker: Worker, streams: Streams, *, tasks: int = 16) -> None:
    """Tasks on the pooled alias, all sent at once: more threads than the pool has connections."""
    results = [worker.send("pooled", 0.1) for _ in range(tasks)]
    streams.pooled = tasks
    for result in results:
        value = result.get(timeout=60, propagate=False)
        if result.failed():
            streams.pooled_failed.append(f"{type(value).__name__}: {value}")
