"""Serve a small Django project with gunicorn --preload and load it, noting which session served what.

Used by tests/test_forks.py (which asserts) and benchmarks/forks.py (which prints the
figures, on this checkout or another). The master connects while it preloads the
application (as a project that queries at import or in AppConfig.ready() does) and
queries that connection again when it exits (gunicorn's on_exit hook). The view answers
with its worker's pid and the server's id of the session it queried on. Sessions are
told apart from everyone else's by a unique application_name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SETTINGS = """
from pathlib import Path

from django_dbconfig import build_databases

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "fork-load-test-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "forkproject.urls"
INSTALLED_APPS = ["django_dbconfig"]
MIDDLEWARE = []
USE_TZ = True
DATABASES = build_databases(BASE_DIR)
"""

URLS = """
import os

from django.db import connection
from django.http import JsonResponse
from django.urls import path


def session(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), pg_sleep(0.002)")
        backend = cursor.fetchone()[0]
    return JsonResponse({"worker": os.getpid(), "session": backend})


urlpatterns = [path("", session)]
"""

WSGI = """
import json
import os
from pathlib import Path

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "forkproject.settings")
application = get_wsgi_application()

# The master's own connection, made while preloading: forked into every worker.
from django.db import connection

with connection.cursor() as cursor:
    cursor.execute("SELECT pg_backend_pid()")
    Path(os.environ["FORK_LOAD_DIR"], "master.json").write_text(json.dumps({"session": cursor.fetchone()[0]}))
"""

CONFIG = """
import json
import os
from pathlib import Path


def on_exit(server):
    # In the master, after its workers are gone: its preloaded connection must still work.
    from django.db import connection

    out = Path(os.environ["FORK_LOAD_DIR"], "master_exit.json")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            out.write_text(json.dumps({"session": cursor.fetchone()[0]}))
    except Exception as exc:
        out.write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
"""


@dataclass
class ForkLoad:
    """What a load of gunicorn --preload did: answers, failures, and sessions per process."""

    label: str
    sent: int
    failed: int
    errors: list[str]
    # worker pid -> the sessions its requests ran on
    sessions: dict[int, set[int]]
    master_before: int | None
    master_after: int | None
    master_error: str | None
    # the app's sessions (by application_name) on the server after the load
    sessions_on_server: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shared(self) -> int:
        """Sessions that served more than one process (the master counts as one)."""
        owners: dict[int, set[int]] = {}
        for worker, sessions in self.sessions.items():
            for session in sessions:
                owners.setdefault(session, set()).add(worker)
        if self.master_before is not None:
            owners.setdefault(self.master_before, set()).add(0)
        return sum(1 for workers in owners.values() if len(workers) > 1)

    def summary(self) -> str:
        per_worker = sorted(len(s) for s in self.sessions.values())
        master = (
            f"master session {self.master_before} -> {self.master_after}"
            if self.master_error is None
            else f"master session {self.master_before} -> error {self.master_error}"
        )
        return (
            f"{self.label}: {self.sent} requests, {self.failed} failed; workers seen {len(self.sessions)}, "
            f"sessions per worker {per_worker}, sessions shared between processes {self.shared}; "
            f"{master}; app sessions on the server {self.sessions_on_server}"
        )


def write_project(root: Path, dbconfig: dict[str, Any]) -> None:
    package = root / "forkproject"
    package.mkdir(parents=True, exist_ok=True)
    for name, text in (("__init__.py", ""), ("settings.py", SETTINGS), ("urls.py", URLS), ("wsgi.py", WSGI)):
        (package / name).write_text(textwrap.dedent(text))
    (root / "gunicorn_conf.py").write_text(textwrap.dedent(CONFIG))
    (root / "dbconfig.json").write_text(json.dumps(dbconfig))


def count_sessions(url: str, application_name: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchone()
        return int(row[0]) if row else 0


def serve_and_load(
    root: Path,
    *,
    url: str,
    label: str,
    pool: bool,
    worker_class: str = "sync",
    workers: int = 3,
    threads: int = 1,
    requests: int = 600,
    clients: int = 12,
    package_path: str | None = None,
    request_timeout: float = 60,
    free_port: Any,
) -> ForkLoad:
    """Start gunicorn --preload on a project connected to `url`, send `requests` from `clients` threads.

    A worker stuck longer than `request_timeout` is killed by gunicorn (and its request
    fails); the client gives up after as long.
    """
    import httpx

    application_name = f"forkload-{uuid.uuid4().hex[:10]}"
    alias: dict[str, Any] = {"url": url, "application_name": application_name}
    if pool:
        alias["pool"] = {"min_size": 1, "max_size": 4, "timeout": 10}
    write_project(root, {"databases": {"default": alias}})
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DBCONFIG_", "PG")) and "DATABASE_URL" not in k
    }
    repo = package_path or str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([str(root), repo])
    env["FORK_LOAD_DIR"] = str(root)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = (root / "gunicorn.log").open("wb")
    command = [
        sys.executable, "-m", "gunicorn", "forkproject.wsgi:application", "--preload",
        "--config", str(root / "gunicorn_conf.py"), "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--worker-class", worker_class, "--threads", str(threads),
        "--timeout", str(round(request_timeout)), "--graceful-timeout", "5", "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(
        command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}/"
    sessions: dict[int, set[int]] = {}
    errors: list[str] = []
    try:
        _wait_until_listening(server, base, root / "gunicorn.log")

        def send(count: int) -> list[tuple[int, int] | str]:
            answers: list[tuple[int, int] | str] = []
            with httpx.Client(timeout=request_timeout) as client:
                for _ in range(count):
                    try:
                        response = client.get(base)
                        if response.status_code != 200:
                            answers.append(f"HTTP {response.status_code}")
                            continue
                        data = response.json()
                        answers.append((int(data["worker"]), int(data["session"])))
                    except Exception as exc:
                        answers.append(f"{type(exc).__name__}: {exc}")
            return answers

        share, extra = divmod(requests, clients)
        counts = [share + (1 if i < extra else 0) for i in range(clients)]
        with ThreadPoolExecutor(clients) as executor:
            for answers in executor.map(send, counts):
                for answer in answers:
                    if isinstance(answer, str):
                        errors.append(answer)
                    else:
                        sessions.setdefault(answer[0], set()).add(answer[1])
        on_server = count_sessions(url, application_name)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(30)
        log.close()
    before = _read(root / "master.json")
    after = _read(root / "master_exit.json")
    return ForkLoad(
        label=label,
        sent=requests,
        failed=len(errors),
        errors=errors[:5],
        sessions=sessions,
        master_before=before.get("session"),
        master_after=after.get("session"),
        master_error=after.get("error", None if after else "on_exit did not run"),
        sessions_on_server=on_server,
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def _wait_until_listening(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Until gunicorn accepts connections (any answer will do: a broken worker answers 500)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "missing", timeout=5):  # noqa: S310
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"gunicorn did not answer on {url}:\n{log.read_text()[-2000:]}")
