"""The health endpoint (`include("django_dbconfig.urls")`): JSON and OpenMetrics, on the
application's own connections, bounded per alias, cached, staff-only details.

Connections opened are counted on the server: PostgreSQL's pg_stat_database.sessions of a
database made for the test, and MariaDB's global `Connections` on a throwaway server.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.backends import BaseBackend
from django.test import AsyncClient, Client

from django_dbconfig import build_databases
from django_dbconfig.health import status
from tests.helpers import registered

URL = "/health/databases/"
ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "s3cret-health-pw"


class StaffUser:
    """Middleware standing in for django.contrib.auth's: the request's user is staff."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        request.user = SimpleNamespace(is_active=True, is_staff=True)
        return self.get_response(request)


@pytest.fixture(autouse=True)
def _endpoint(settings: Any, django_db_blocker: Any) -> Iterator[None]:
    settings.ROOT_URLCONF = "tests.health_urls"
    settings.MIDDLEWARE = []
    settings.DBCONFIG_HEALTH_CACHE_SECONDS = 0
    status.forget()
    # The probe threads use the connections of DATABASES, as the application does.
    with django_db_blocker.unblock():
        yield
    status.forget()


def entry(tmp_path: Path, url: str, **environ: str) -> dict[str, Any]:
    """The DATABASES entry build_databases() makes of one URL (and variables)."""
    return dict(build_databases(tmp_path, environ={"DATABASE_URL": url, **environ})["default"])


def get(client: Client, query: str = "") -> tuple[int, dict[str, Any]]:
    response = client.get(URL + query)
    return response.status_code, json.loads(response.content)


def without_age(answer: tuple[int, dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """An answer without the ages of its results (they grow while a cached result is served)."""
    code, body = answer
    rows = [{k: v for k, v in row.items() if k != "age_s"} for row in body["databases"]]
    return code, {**body, "databases": rows}


def by_alias(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["alias"]: row for row in body["databases"]}


def parse_metrics(text: str) -> dict[tuple[str, str], float]:
    """Every sample as (name, alias) -> value, read by prometheus_client's OpenMetrics parser."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    return {
        (sample.name, sample.labels["alias"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# ------------------------------------------------------------------ SQLite (no server)


def test_every_alias_answers_with_the_designed_fields(client: Client) -> None:
    code, body = get(client)
    assert code == 200
    assert body == {
        "ok": True,
        "databases": [
            {
                "alias": "default",
                "ok": True,
                "latency_ms": body["databases"][0]["latency_ms"],
                "read_only": False,
                "replica_lag_s": None,
                "role": None,  # SQLite has no primary or standby
                "stale": False,
                "age_s": body["databases"][0]["age_s"],
            }
        ],
    }
    assert isinstance(body["databases"][0]["latency_ms"], float)


def test_unknown_alias_format_and_method_are_refused(client: Client) -> None:
    code, body = get(client, "?database=nope")
    assert (code, body["error"], body["known"]) == (400, "unknown database alias: nope", ["default"])
    code, body = get(client, "?format=xml")
    assert (code, body["error"]) == (400, "unknown format 'xml': use json or openmetrics")
    assert client.post(URL).status_code == 405
    assert client.head(URL).status_code == 200


def test_answers_are_never_cached_by_http_caches(client: Client) -> None:
    assert "no-cache" in client.get(URL)["Cache-Control"]


def test_openmetrics_is_valid_exposition(client: Client) -> None:
    response = client.get(URL + "?format=openmetrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    samples = parse_metrics(response.content.decode())
    assert set(samples) == {
        ("dbconfig_database_up", "default"),
        ("dbconfig_database_latency_seconds", "default"),
    }
    assert samples[("dbconfig_database_up", "default")] == 1.0


def test_the_cache_setting_must_be_a_number(client: Client, settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.DBCONFIG_HEALTH_CACHE_SECONDS = "5"
    with pytest.raises(ImproperlyConfigured, match="DBCONFIG_HEALTH_CACHE_SECONDS must be a number"):
        client.get(URL)


def test_works_under_asgi() -> None:
    import asyncio

    response = asyncio.run(AsyncClient().get(URL + "?database=default"))
    assert response.status_code == 200
    assert json.loads(response.content)["databases"][0]["ok"] is True


# ------------------------------------------------------------------ PostgreSQL


def _pg_admin(postgres: dict[str, Any], sql: str) -> Any:
    import psycopg

    with psycopg.connect(**{**postgres, "dbname": "postgres"}, autocommit=True, connect_timeout=5) as conn:
        cursor = conn.execute(sql)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else None


@pytest.fixture
def pg_database(shared_postgres: dict[str, Any]) -> Iterator[str]:
    """A database of its own on the shared server, so that its session count is ours alone."""
    name = f"dbconfig_health_{uuid.uuid4().hex[:10]}"
    _pg_admin(shared_postgres, f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        _pg_admin(shared_postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_sessions(postgres: dict[str, Any], dbname: str) -> tuple[int, list[tuple[Any, ...]]]:
    """Sessions ever established to `dbname` (flushed stats), and those open now."""
    time.sleep(1.5)  # backends flush their statistics at most once a second
    rows = _pg_admin(
        postgres,
        f"SELECT (SELECT sessions FROM pg_stat_database WHERE datname = '{dbname}'), "
        f"(SELECT count(*) FROM pg_stat_activity WHERE datname = '{dbname}')",
    )
    opened, open_now = rows[0]
    backends = _pg_admin(
        postgres, f"SELECT pid, backend_start FROM pg_stat_activity WHERE datname = '{dbname}' ORDER BY pid"
    )
    assert open_now == len(backends)
    return int(opened), backends


@pytest.mark.postgresql
def test_postgresql_probes_every_100ms_for_10s_open_no_new_connection(
    tmp_path: Path, client: Client, shared_postgres: dict[str, Any], pg_database: str
) -> None:
    url = f"postgresql://postgres@127.0.0.1:5432/{pg_database}"
    with registered({"pg": entry(tmp_path, url)}):
        assert get(client, "?database=pg")[0] == 200  # the connection the probes will reuse
        opened_before, backends_before = _pg_sessions(shared_postgres, pg_database)
        assert len(backends_before) == 1
        timings = []
        for _ in range(100):
            start = time.perf_counter()
            code, body = get(client, "?database=pg")
            timings.append(time.perf_counter() - start)
            assert code == 200, body
            time.sleep(0.1)
        opened_after, backends_after = _pg_sessions(shared_postgres, pg_database)
    assert (opened_after - opened_before, backends_after) == (0, backends_before)
    print(f"\nPostgreSQL probe, no cache: median {statistics.median(timings) * 1000:.2f} ms per request")


@pytest.mark.postgresql
def test_postgresql_cached_answers_do_not_reach_the_server(
    tmp_path: Path, client: Client, settings: Any, shared_postgres: dict[str, Any], pg_database: str
) -> None:
    url = f"postgresql://postgres@127.0.0.1:5432/{pg_database}"

    def last_query_start() -> Any:
        rows = _pg_admin(
            shared_postgres, f"SELECT query_start FROM pg_stat_activity WHERE datname = '{pg_database}'"
        )
        assert len(rows) == 1
        return rows[0][0]

    settings.DBCONFIG_HEALTH_CACHE_SECONDS = 30
    with registered({"pg": entry(tmp_path, url)}):
        first = get(client, "?database=pg")
        probed_at = last_query_start()
        timings = []
        for _ in range(20):
            start = time.perf_counter()
            assert without_age(get(client, "?database=pg")) == without_age(first)
            timings.append(time.perf_counter() - start)
        assert last_query_start() == probed_at
        settings.DBCONFIG_HEALTH_CACHE_SECONDS = 0
        get(client, "?database=pg")
        assert last_query_start() > probed_at
    print(f"\nPostgreSQL probe, cached: median {statistics.median(timings) * 1000:.2f} ms per request")


@pytest.mark.postgresql
def test_server_state_is_reported_tls_and_errors_to_staff_only(
    tmp_path: Path, client: Client, settings: Any, pg_tls_server: Any
) -> None:
    tls = entry(
        tmp_path,
        pg_tls_server.url(),
        DBCONFIG_DEFAULT_SSLMODE="verify-full",
        DBCONFIG_DEFAULT_SSLROOTCERT=str(pg_tls_server.ca_path),
        DBCONFIG_DEFAULT_READ_ONLY="true",
    )
    # Refused at once: nothing listens on port 1.
    down = entry(tmp_path, f"postgresql://app:{PASSWORD}@127.0.0.1:1/app")
    with registered({"tls": tls, "down": down}):
        code, body = get(client, "?database=tls&database=down")
        assert code == 503
        assert by_alias(body) == {
            "tls": {
                "alias": "tls",
                "ok": True,
                "latency_ms": by_alias(body)["tls"]["latency_ms"],
                "read_only": True,
                "replica_lag_s": None,
                "role": "primary",
                "stale": False,
                "age_s": by_alias(body)["tls"]["age_s"],
            },
            "down": {
                "alias": "down",
                "ok": False,
                "latency_ms": None,
                "read_only": None,
                "replica_lag_s": None,
                "role": None,
                "stale": False,
                "age_s": by_alias(body)["down"]["age_s"],
            },
        }
        settings.MIDDLEWARE = ["tests.test_health_endpoint.StaffUser"]
        client = Client()  # a client loads the middleware once
        response = client.get(URL + "?database=tls&database=down")
        staff = by_alias(json.loads(response.content))
        metrics = parse_metrics(
            client.get(URL + "?format=openmetrics&database=tls&database=down").content.decode()
        )
    assert staff["tls"]["tls"]["in_use"] is True
    assert staff["tls"]["tls"]["version"].startswith("TLSv1.")
    assert staff["tls"]["error"] is None
    assert staff["down"]["tls"] is None
    assert "OperationalError" in staff["down"]["error"]
    assert PASSWORD not in response.content.decode()
    assert metrics[("dbconfig_tls_in_use", "tls")] == 1.0
    assert metrics[("dbconfig_database_up", "tls")] == 1.0
    assert metrics[("dbconfig_database_up", "down")] == 0.0
    assert ("dbconfig_tls_in_use", "down") not in metrics


@pytest.mark.postgresql
@pytest.mark.mariadb
def test_hung_aliases_answer_within_their_connect_timeout_and_others_still_report(
    tmp_path: Path,
    client: Client,
    hung_server: Any,
    shared_postgres: dict[str, Any],
    shared_mariadb: dict[str, Any],
) -> None:
    hung = f"127.0.0.1:{hung_server.port}"
    with registered(
        {
            "pg_hung": entry(tmp_path, f"postgresql://app@{hung}/app", DBCONFIG_DEFAULT_CONNECT_TIMEOUT="2s"),
            "mysql_hung": entry(tmp_path, f"mysql://app@{hung}/app", DBCONFIG_DEFAULT_CONNECT_TIMEOUT="2s"),
            "pg": entry(tmp_path, "postgresql://postgres@127.0.0.1:5432/test"),
            "mariadb": entry(tmp_path, "mysql://root@127.0.0.1:3306/test"),
        }
    ):
        for _ in range(2):  # the second time, the hung probes may still be stuck: same bound
            start = time.monotonic()
            code, body = get(client)
            elapsed = time.monotonic() - start
            assert code == 503
            assert {row["alias"]: row["ok"] for row in body["databases"]} == {
                "default": True,
                "pg_hung": False,
                "mysql_hung": False,
                "pg": True,
                "mariadb": True,
            }
            # 2 s connect timeout + 0.5 s margin, probed at the same time; generous for a loaded machine.
            assert elapsed < 6, elapsed


@pytest.mark.postgresql
@pytest.mark.slow
def test_replica_lag_is_read_on_a_postgresql_standby(
    tmp_path: Path, client: Client, pg_replica_pair: Any
) -> None:
    primary, replica = pg_replica_pair
    with registered({"primary": entry(tmp_path, primary.url()), "replica": entry(tmp_path, replica.url())}):
        code, body = get(client, "?database=primary&database=replica")
        metrics = parse_metrics(client.get(URL + "?format=openmetrics").content.decode())
    rows = by_alias(body)
    assert code == 200
    assert (rows["primary"]["replica_lag_s"], rows["primary"]["read_only"]) == (None, False)
    assert isinstance(rows["replica"]["replica_lag_s"], float)
    assert rows["replica"]["replica_lag_s"] >= 0
    assert rows["replica"]["read_only"] is True  # a hot standby refuses writes
    assert (rows["primary"]["role"], rows["replica"]["role"]) == ("primary", "standby")
    assert metrics[("dbconfig_replica_lag_seconds", "replica")] == rows["replica"]["replica_lag_s"]
    assert ("dbconfig_replica_lag_seconds", "primary") not in metrics


# ------------------------------------------------------------------ MariaDB


@pytest.mark.mariadb
@pytest.mark.slow
def test_replica_lag_is_read_on_a_mariadb_replica(tmp_path: Path, client: Client, mariadb_pair: Any) -> None:
    primary, replica = mariadb_pair.primary, mariadb_pair.replica
    with registered(
        {
            "primary": entry(tmp_path, primary.url().replace("mysql://", "mariadb://")),
            "replica": entry(tmp_path, replica.url().replace("mysql://", "mariadb://")),
        }
    ):
        code, body = get(client, "?database=primary&database=replica")
        metrics = parse_metrics(client.get(URL + "?format=openmetrics").content.decode())
    rows = by_alias(body)
    assert code == 200, body
    assert rows["primary"]["replica_lag_s"] is None
    assert rows["replica"]["replica_lag_s"] == 0.0  # replicating, caught up: Seconds_Behind_Master 0
    assert (rows["primary"]["role"], rows["replica"]["role"]) == ("primary", "standby")
    assert metrics[("dbconfig_replica_lag_seconds", "replica")] == 0.0
    assert ("dbconfig_replica_lag_seconds", "primary") not in metrics


@pytest.mark.mariadb
def test_mariadb_probes_every_100ms_for_10s_open_no_new_connection(
    tmp_path: Path, client: Client, mariadb_plain_server: Any
) -> None:
    import MySQLdb

    server = mariadb_plain_server
    counter = MySQLdb.connect(**server.connect_kwargs())

    def connections_opened() -> int:
        cursor = counter.cursor()
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Connections'")
        return int(cursor.fetchone()[1])

    try:
        with registered({"mdb": entry(tmp_path, server.url())}):
            assert get(client, "?database=mdb")[0] == 200
            before = connections_opened()
            timings = []
            for _ in range(100):
                start = time.perf_counter()
                code, body = get(client, "?database=mdb")
                timings.append(time.perf_counter() - start)
                assert code == 200, body
                time.sleep(0.1)
            after = connections_opened()
    finally:
        counter.close()
    assert after - before == 0
    assert body["databases"][0]["read_only"] is False
    print(f"\nMariaDB probe, no cache: median {statistics.median(timings) * 1000:.2f} ms per request")


@pytest.mark.mariadb
def test_mariadb_read_only_and_tls_as_the_server_reports(
    tmp_path: Path, client: Client, settings: Any, mariadb_tls_server: Any
) -> None:
    settings.MIDDLEWARE = ["tests.test_health_endpoint.StaffUser"]
    server = mariadb_tls_server
    tls = entry(
        tmp_path,
        server.url(),
        DBCONFIG_DEFAULT_SSLMODE="verify-full",
        DBCONFIG_DEFAULT_SSLROOTCERT=str(server.ca_path),
        DBCONFIG_DEFAULT_READ_ONLY="true",
        DBCONFIG_DEFAULT_BACKEND="mariadb",
    )
    with registered({"mdb": tls}):
        code, body = get(client, "?database=mdb")
    row = body["databases"][0]
    assert (code, row["ok"], row["read_only"], row["tls"]["in_use"]) == (200, True, True, True)
    assert row["tls"]["cipher"]


# ------------------------------------------------------------------ a real ASGI server

ASGI_SETTINGS = """\
from tests.settings import *  # noqa: F403
ROOT_URLCONF = "tests.health_urls"
DATABASES = {{"default": {database!r}}}
ALLOWED_HOSTS = ["127.0.0.1"]
"""


@pytest.mark.postgresql
def test_a_real_uvicorn_server_answers(
    tmp_path: Path, tmp_path_factory: Any, shared_postgres: dict[str, Any]
) -> None:
    import httpx

    from tests.servers import free_port

    database = entry(tmp_path, "postgresql://postgres@127.0.0.1:5432/test")
    (tmp_path / "asgi_settings.py").write_text(ASGI_SETTINGS.format(database=database))
    (tmp_path / "asgi_app.py").write_text(
        "from django.core.asgi import get_asgi_application\napplication = get_asgi_application()\n"
    )
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DBCONFIG_")},
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "asgi_settings",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "asgi_app:application",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}{URL}?format=openmetrics", timeout=10)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        json_response = httpx.get(f"http://127.0.0.1:{port}{URL}", timeout=10)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=10)
    assert response.status_code == 200, stderr
    assert parse_metrics(response.text)[("dbconfig_database_up", "default")] == 1.0
    assert json_response.status_code == 200
    assert json_response.json()["databases"][0]["ok"] is True


class InMemoryUsers(BaseBackend):
    """An authentication backend whose users live in memory: no test database to leave open."""

    users: dict[int, Any] = {}

    def get_user(self, user_id: Any) -> Any:
        return self.users.get(int(user_id))


def logged_in(client: Client, user: Any) -> Client:
    """Put the user's session in the client's cookie, as login() would (signed-cookie sessions)."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.signed_cookies import SessionStore

    InMemoryUsers.users[user.pk] = user
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "tests.test_health_endpoint.InMemoryUsers"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
    return client


def test_with_django_contrib_auth_only_staff_see_errors(tmp_path: Path, settings: Any) -> None:
    """django.contrib.auth's own middleware: a logged-in staff user sees the error, others do not."""
    from django.contrib.auth.models import User

    settings.MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    settings.AUTHENTICATION_BACKENDS = ["tests.test_health_endpoint.InMemoryUsers"]
    visitor = User(pk=1, username="visitor", is_active=True, password="!")
    staff = User(pk=2, username="operator", is_active=True, is_staff=True, password="!")
    down = entry(tmp_path, f"postgresql://app:{PASSWORD}@127.0.0.1:1/app")
    bodies = {}
    with registered({"down": down}):
        for name, client in (
            ("anonymous", Client()),
            ("user", logged_in(Client(), visitor)),
            ("staff", logged_in(Client(), staff)),
        ):
            code, body = get(client, "?database=down")
            assert code == 503
            bodies[name] = body["databases"][0]
    assert "error" not in bodies["anonymous"] and "error" not in bodies["user"]
    assert "Connection refused" in bodies["staff"]["error"]
    assert PASSWORD not in json.dumps(bodies)
