"""Serve a small Django project with uvicorn (or gunicorn) and load it with ab, counting the server's connections.

Used by tests/test_asgi.py (which asserts the bounds) and benchmarks/asgi.py (which
prints the figures for several configurations). The project has one view that runs
one query through Django's connection. Connections are counted in pg_stat_activity
by a sampler that connects as the superuser over the Unix socket, so it never counts
itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers import PostgresServer, ServerUnavailable, free_port

SETTINGS = """
from pathlib import Path

from django_dbconfig import build_databases

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "asgi-load-test-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "loadproject.urls"
INSTALLED_APPS = ["django_dbconfig"]
MIDDLEWARE = []
USE_TZ = True
DATABASES = build_databases(BASE_DIR)
"""

URLS = """
from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpResponse
from django.urls import path


def query():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.002)" if connection.vendor == "postgresql" else "SELECT SLEEP(0.002)")


def one_query(request):
    query()
    return HttpResponse("ok")


async def one_query_async(request):
    # As the async ORM does: the query runs in the request's thread-sensitive thread.
    await sync_to_async(query)()
    return HttpResponse("ok")


urlpatterns = [path("", one_query), path("async", one_query_async)]
"""

WSGI = """
import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loadproject.settings")
if os.environ.get("LOAD_GC") == "off":
    gc.disable()
application = get_wsgi_application()
"""

ASGI = """
import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loadproject.settings")
if os.environ.get("LOAD_GC") == "off":
    # Connections must close because they are closed, not because a collection freed them.
    gc.disable()
application = get_asgi_application()
"""


@dataclass
class LoadResult:
    """What one run of ab against uvicorn or gunicorn did to the server's connections."""

    label: str
    complete: int
    failed: int
    non_2xx: int
    requests_per_s: float
    peak: int
    # Connections of the app's role, sampled each second after the load stopped.
    after: list[int] = field(default_factory=list)
    # Distinct server sessions (backend pids) seen during the load: how often it connected.
    sessions: int = 0

    @property
    def remaining(self) -> int:
        return self.after[-1] if self.after else -1


def write_project(root: Path, *, dbconfig: dict[str, Any] | None, databases: dict[str, Any] | None) -> Path:
    """The project in `root`: dbconfig.json for build_databases(), or a DATABASES dict written as is."""
    package = root / "loadproject"
    package.mkdir(parents=True, exist_ok=True)
    settings = SETTINGS if databases is None else SETTINGS + f"DATABASES = {databases!r}\n"
    files = (
        ("__init__.py", ""),
        ("settings.py", settings),
        ("urls.py", URLS),
        ("asgi.py", ASGI),
        ("wsgi.py", WSGI),
    )
    for name, text in files:
        (package / name).write_text(textwrap.dedent(text))
    (root / "dbconfig.json").write_text(json.dumps(dbconfig or {}))
    return root


class Sampler(threading.Thread):
    """Count the app role's connections every few milliseconds; remember the peak."""

    def __init__(self, server: PostgresServer) -> None:
        super().__init__(daemon=True)
        import psycopg

        self.connection = psycopg.connect(
            host=str(server.socket_dir), port=server.port, user=server.superuser, dbname="postgres",
            autocommit=True,
        )  # fmt: skip
        self.user = server.user
        self.peak = 0
        self.pids: set[int] = set()
        self.stopped = threading.Event()

    def sample(self) -> set[int]:
        rows = self.connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE usename = %s", (self.user,)
        ).fetchall()
        return {int(row[0]) for row in rows}

    def count(self) -> int:
        return len(self.sample())

    def run(self) -> None:
        while not self.stopped.is_set():
            pids = self.sample()
            self.pids |= pids
            self.peak = max(self.peak, len(pids))
            time.sleep(0.01)

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def _parse_ab(output: str) -> tuple[int, int, int, float]:
    """Complete requests, failed ones (not answered), non-2xx answers, and requests/s."""

    def number(pattern: str) -> float:
        match = re.search(pattern + r":?\s+([\d.]+)", output, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    # ab's "Failed requests" also counts answers whose length differs from the first
    # one (an error page among "ok"s); those are counted as non-2xx instead.
    kinds = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)", output)
    unanswered = sum(int(n) for n in kinds.groups()) if kinds else 0
    return (
        int(number("^Complete requests")),
        unanswered,
        int(number("^Non-2xx responses")),
        number("^Requests per second"),
    )


def serve_and_load(
    server: PostgresServer,
    root: Path,
    *,
    label: str,
    requests: int,
    concurrency: int,
    settle_seconds: int = 5,
    gc_off: bool = True,
    path: str = "",
    wsgi_threads: int = 0,
) -> LoadResult:
    """Start uvicorn on the project in `root` (or gunicorn with `wsgi_threads` threads, one
    worker), run ab against it, and count connections."""
    ab = _ab()
    process, url, log = _serve(root, gc_off=gc_off, path=path, wsgi_threads=wsgi_threads)
    try:
        _wait_until_serving(process, url, root / "server.log")
        sampler = Sampler(server)
        sampler.start()
        try:
            out = subprocess.run(
                [ab, "-q", "-r", "-s", "60", "-n", str(requests), "-c", str(concurrency), url],
                capture_output=True, text=True, timeout=600, check=False,
            )  # fmt: skip
        finally:
            sampler.stop()
        complete, failed, non_2xx, rate = _parse_ab(out.stdout)
        if complete == 0:
            raise AssertionError(f"ab did not run: {out.stdout[-500:]} {out.stderr[-500:]}")
        after = []
        for _ in range(settle_seconds):
            time.sleep(1)
            after.append(sampler.count())
        sampler.connection.close()
        return LoadResult(label, complete, failed, non_2xx, rate, sampler.peak, after, len(sampler.pids))
    finally:
        _stop(process, log)


def load_side_by_side(
    roots: list[Path],
    *,
    requests: int,
    concurrency: int,
    gc_off: bool = False,
    wsgi_threads: int | list[int] = 0,
) -> list[tuple[float, int]]:
    """Serve each project at once and load them all at the same time: (requests/s, failed) each.

    Background load on the machine then falls on every project alike, so their ratio is fair.
    `wsgi_threads`: gunicorn with that many threads instead of uvicorn, for all or per project.
    """
    ab = _ab()
    threads = wsgi_threads if isinstance(wsgi_threads, list) else [wsgi_threads] * len(roots)
    served = [
        _serve(root, gc_off=gc_off, path="", wsgi_threads=count)
        for root, count in zip(roots, threads, strict=True)
    ]
    try:
        for (process, url, _), root in zip(served, roots, strict=True):
            _wait_until_serving(process, url, root / "server.log")
        loads = [
            subprocess.Popen(
                [ab, "-q", "-r", "-s", "60", "-n", str(requests), "-c", str(concurrency), url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _, url, _ in served
        ]
        results = []
        for load in loads:
            out, _ = load.communicate(timeout=600)
            complete, failed, non_2xx, rate = _parse_ab(out)
            results.append((rate, failed + non_2xx + (requests - complete)))
        return results
    finally:
        for process, _, log in served:
            _stop(process, log)


def _ab() -> str:
    ab = shutil.which("ab")
    if ab is None:
        raise ServerUnavailable("ab (apache2-utils) is not installed: run scripts/setup.sh")
    return ab


def _serve(
    root: Path, *, gc_off: bool, path: str, wsgi_threads: int
) -> tuple[subprocess.Popen[bytes], str, Any]:
    """Start uvicorn (or gunicorn with threads) on the project in `root`: the process, URL and log."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DBCONFIG_", "PG")) and "DATABASE_URL" not in k
    }
    env["LOAD_GC"] = "off" if gc_off else "on"
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(Path(__file__).resolve().parent.parent)])
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = (root / "server.log").open("wb")
    if wsgi_threads:
        command = [sys.executable, "-m", "gunicorn", "loadproject.wsgi:application", "--bind",
                   f"127.0.0.1:{port}", "--workers", "1", "--threads", str(wsgi_threads),
                   "--log-level", "warning"]  # fmt: skip
    else:
        command = [sys.executable, "-m", "uvicorn", "loadproject.asgi:application", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", "1", "--log-level", "warning", "--no-access-log"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
    )
    return process, f"http://127.0.0.1:{port}/{path}", log


def _stop(process: subprocess.Popen[bytes], log: Any) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(30)
    log.close()


def _wait_until_serving(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own loopback server
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the server did not answer on {url}:\n{log.read_text()[-2000:]}")
