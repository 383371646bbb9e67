"""`password_provider`: a fresh secret for each new connection, never stored or shown.

The providers the configs name live in this module. The rotation test changes the
role's password on a throwaway PostgreSQL (SCRAM-SHA-256 over TCP) every second while
request cycles run, with persistent connections and with Django's pool.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import io
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import django
import pytest
from django.core.management import call_command

from django_dbconfig import DbConfigError, build_databases
from django_dbconfig.backends.base.credentials import PasswordProviderError, SecretCache
from django_dbconfig.credentials import _rds_client, aws_rds_iam
from tests.servers import MariaDBServer, PostgresServer
from tests.test_dbcheck import by_alias, dbcheck_json, using_databases

SECRET = "provided-secret-value-1234"


# ---------------------------------------------------------------- providers named by the configs


class Calls:
    """What the providers below were asked for, and what they hand out."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.password = SECRET
        self.generation = 0
        self.by_generation: collections.Counter[int] = collections.Counter()

    def reset(self, password: str) -> None:
        with self.lock:
            self.password, self.generation = password, 0
            self.by_generation.clear()

    def take(self) -> str:
        with self.lock:
            self.by_generation[self.generation] += 1
            return self.password

    @property
    def total(self) -> int:
        return sum(self.by_generation.values())


CALLS = Calls()


def current_password(alias: str, settings: Mapping[str, Any]) -> str:
    return CALLS.take()


def expiring_password(alias: str, settings: Mapping[str, Any]) -> tuple[str, float]:
    return CALLS.take(), time.time() + 600


def failing_provider(alias: str, settings: Mapping[str, Any]) -> str:
    raise RuntimeError("token service said 503")


def shapeless_provider(alias: str, settings: Mapping[str, Any]) -> Any:
    return [SECRET]


def naive_expiry(alias: str, settings: Mapping[str, Any]) -> Any:
    return SECRET, datetime.datetime(2030, 1, 1)  # naive: the mistake under test


def configure(tmp_path: Path, databases: Mapping[str, Any]) -> dict[str, Any]:
    return build_databases(tmp_path, environ={}, overrides={"databases": dict(databases)})


def pg_alias(server: PostgresServer, provider: str = "current_password", **keys: Any) -> dict[str, Any]:
    return {
        "backend": "postgresql",
        "host": server.host,
        "port": server.port,
        "name": server.dbname,
        "user": server.user,
        "sslmode": "disable",
        "password_provider": f"tests.test_credentials.{provider}",
        **keys,
    }


# ---------------------------------------------------------------- configuration


def test_the_provider_is_rendered_never_a_password(tmp_path: Path) -> None:
    databases = configure(
        tmp_path,
        {
            "default": {
                "backend": "postgresql",
                "name": "app",
                "user": "web",
                "password_provider": "myproject.db.token",
            }
        },
    )
    assert "PASSWORD" not in databases["default"]
    assert databases["default"]["DBCONFIG"] == {"password_provider": "myproject.db.token", "asgi_pool": {}}


def test_a_password_beside_a_provider_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DbConfigError) as info:
        configure(
            tmp_path,
            {
                "default": {
                    "url": "postgresql://web:hunter2-secret@db/app",
                    "password_provider": "myproject.db.token",
                }
            },
        )
    assert str(info.value) == (
        'override: databases.default.password_provider (alias "default"): password_provider and a password '
        "(override: databases.default.url) are both set. The provider gives the password for each new "
        "connection: remove the password (or the password in the URL), or remove password_provider."
    )
    assert "hunter2" not in str(info.value)


def test_a_provider_must_be_a_dotted_path(tmp_path: Path) -> None:
    with pytest.raises(
        DbConfigError,
        match='expected the dotted path of a callable such as "myproject.db.token", got "token"',
    ):
        configure(tmp_path, {"default": {"backend": "postgresql", "name": "a", "password_provider": "token"}})


def test_a_provider_on_sqlite_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DbConfigError, match="password_provider is not supported on SQLite"):
        configure(tmp_path, {"default": {"backend": "sqlite", "name": "a", "password_provider": "a.b"}})


# ---------------------------------------------------------------- calling providers


def settings_for(provider: str) -> dict[str, Any]:
    return {
        "HOST": "db",
        "PORT": 5432,
        "USER": "web",
        "NAME": "app",
        "DBCONFIG": {"password_provider": provider},
    }


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        (
            "tests.test_credentials.failing_provider",
            'password_provider "tests.test_credentials.failing_provider" of alias "default" failed: '
            "RuntimeError: token service said 503",
        ),
        (
            "tests.test_credentials.no_such_provider",
            'password_provider "tests.test_credentials.no_such_provider" of alias "default" cannot be imported: '
            'Module "tests.test_credentials" does not define a "no_such_provider" attribute/class. '
            "Check the dotted path (module.function).",
        ),
        (
            "tests.test_credentials.shapeless_provider",
            'password_provider "tests.test_credentials.shapeless_provider" of alias "default" returned list; '
            "expected a string, or a (secret, expires_at) pair with expires_at an aware datetime or a Unix time.",
        ),
        (
            "tests.test_credentials.naive_expiry",
            'password_provider "tests.test_credentials.naive_expiry" of alias "default" returned a naive datetime '
            "as expires_at; return an aware one (e.g. datetime.now(timezone.utc) + timedelta(minutes=15)).",
        ),
    ],
    ids=["raises", "missing", "wrong_shape", "naive_expiry"],
)
def test_provider_errors_name_the_alias_and_the_provider_never_the_secret(
    provider: str, message: str
) -> None:
    with pytest.raises(PasswordProviderError) as info:
        SecretCache().secret("default", settings_for(provider))
    assert str(info.value) == message
    assert isinstance(info.value, DbConfigError)
    assert SECRET not in str(info.value)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_plain_secret_is_asked_for_at_every_connection() -> None:
    CALLS.reset(SECRET)
    cache = SecretCache(clock=FakeClock(1000.0))
    settings = settings_for("tests.test_credentials.current_password")
    assert [cache.secret("default", settings) for _ in range(3)] == [SECRET] * 3
    assert CALLS.total == 3


def test_a_secret_with_an_expiry_is_reused_until_shortly_before_it() -> None:
    CALLS.reset(SECRET)
    clock = FakeClock(time.time())
    cache = SecretCache(clock=clock)
    settings = settings_for("tests.test_credentials.expiring_password")  # valid 600 s
    assert cache.secret("default", settings) == SECRET
    clock.now += 539  # 60 s margin: still good
    assert cache.secret("default", settings) == SECRET
    assert CALLS.total == 1
    clock.now += 2  # within the margin: asked again
    cache.secret("default", settings)
    assert CALLS.total == 2
    # Another alias, or another user, has its own secret.
    cache.secret("other", settings)
    cache.secret("default", {**settings, "USER": "admin"})
    assert CALLS.total == 4
    assert SECRET not in repr(cache)


def test_aws_rds_iam_signs_a_token_locally_and_it_is_cached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("boto3")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKEFAKE",
        "AWS_SECRET_ACCESS_KEY": "fake/secret/key/for/tests/only/0000000000",
        "AWS_REGION": "eu-west-3",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    _rds_client.cache_clear()
    settings = {
        "HOST": "app.abcdefghijkl.eu-west-3.rds.amazonaws.com",
        "PORT": 5432,
        "USER": "web",
        "NAME": "app",
        "DBCONFIG": {"password_provider": "django_dbconfig.credentials.aws_rds_iam"},
    }
    token, expires_at = aws_rds_iam("default", settings)
    assert re.fullmatch(
        r"app\.abcdefghijkl\.eu-west-3\.rds\.amazonaws\.com:5432/\?Action=connect&DBUser=web"
        r"&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAFAKEFAKEFAKEFAKE%2F\d{8}%2Feu-west-3%2Frds-db%2Faws4_request"
        r"&X-Amz-Date=\d{8}T\d{6}Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=[0-9a-f]{64}",
        token,
    ), token
    assert 899 <= (expires_at - datetime.datetime.now(datetime.timezone.utc)).total_seconds() <= 900

    clock = FakeClock(time.time())
    cache = SecretCache(clock=clock)
    first = cache.secret("default", settings)
    clock.now += 5
    assert cache.secret("default", settings) == first  # reused: no new signature
    clock.now += 900 - 60  # within a minute of the expiry
    time.sleep(1.1)  # X-Amz-Date has one-second resolution
    assert cache.secret("default", settings) != first
    _rds_client.cache_clear()


def test_aws_rds_iam_without_a_region_says_how_to_set_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("boto3")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    _rds_client.cache_clear()
    with pytest.raises(PasswordProviderError, match="aws_rds_iam cannot tell the AWS region: set AWS_REGION"):
        aws_rds_iam("default", {"HOST": "db.internal", "PORT": 5432, "USER": "web"})
    _rds_client.cache_clear()


# ---------------------------------------------------------------- against real servers


@pytest.mark.postgresql
def test_the_provider_gives_the_password_of_connections_and_of_dbcheck(
    tmp_path: Path, pg_plain_server: PostgresServer
) -> None:
    from django.db import connections

    CALLS.reset(pg_plain_server.password)
    databases = configure(tmp_path, {"provided": pg_alias(pg_plain_server)})
    assert pg_plain_server.password not in json.dumps(databases)
    status, result = dbcheck_json(databases)
    assert status == 0, by_alias(result)["provided"]["problems"]
    assert CALLS.total == 1
    with using_databases(databases, routers=[]):
        try:
            with connections["provided"].cursor() as cursor:
                cursor.execute("SELECT current_user")
                assert cursor.fetchone()[0] == pg_plain_server.user
        finally:
            connections["provided"].close()
    assert CALLS.total == 2
    out = io.StringIO()
    with using_databases(databases):
        call_command("dbconfig", "--format", "json", stdout=out)
    assert pg_plain_server.password not in out.getvalue()


@pytest.mark.postgresql
def test_a_failing_provider_fails_dbcheck_naming_it(tmp_path: Path, pg_plain_server: PostgresServer) -> None:
    databases = configure(tmp_path, {"provided": pg_alias(pg_plain_server, "failing_provider")})
    status, result = dbcheck_json(databases)
    assert status == 1
    assert by_alias(result)["provided"]["error"] == (
        'PasswordProviderError: password_provider "tests.test_credentials.failing_provider" of alias '
        '"provided" failed: RuntimeError: token service said 503'
    )


@pytest.mark.mariadb
def test_the_provider_gives_the_password_on_mariadb(
    tmp_path: Path, mariadb_plain_server: MariaDBServer
) -> None:
    from django.db import connections

    server = mariadb_plain_server
    CALLS.reset(server.password)
    databases = configure(
        tmp_path,
        {
            "provided_mariadb": {
                "backend": "mariadb",
                "host": server.host,
                "port": server.port,
                "name": server.dbname,
                "user": server.user,
                "password_provider": "tests.test_credentials.current_password",
            }
        },
    )
    with using_databases(databases, routers=[]):
        try:
            with connections["provided_mariadb"].cursor() as cursor:
                cursor.execute("SELECT CURRENT_USER()")
                assert cursor.fetchone()[0].startswith(f"{server.user}@")
        finally:
            connections["provided_mariadb"].close()
    assert CALLS.total == 1


class Gate:
    """Requests pass together; a rotation waits for them to finish and holds new ones back."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.readers = 0
        self.writing = False

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        with self.condition:
            self.condition.wait_for(lambda: not self.writing)
            self.readers += 1
        try:
            yield
        finally:
            with self.condition:
                self.readers -= 1
                self.condition.notify_all()

    @contextlib.contextmanager
    def rotation(self) -> Iterator[None]:
        with self.condition:
            self.writing = True
            self.condition.wait_for(lambda: self.readers == 0)
        try:
            yield
        finally:
            with self.condition:
                self.writing = False
                self.condition.notify_all()


def run_requests(
    alias: str, gate: Gate, stop: threading.Event, done: list[int], failures: list[str]
) -> Callable[[], None]:
    def cycles() -> None:
        from django.core.signals import request_finished, request_started
        from django.db import connections

        try:
            while not stop.is_set():
                with gate.request():
                    try:
                        request_started.send(sender=None)
                        with connections[alias].cursor() as cursor:
                            cursor.execute("SELECT 1")
                            cursor.fetchone()
                        request_finished.send(sender=None)
                        done.append(1)
                    except Exception as exc:
                        failures.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.01)
        finally:
            connections[alias].close()

    return cycles


@pytest.mark.postgresql
@pytest.mark.parametrize(
    "keys",
    [
        {"conn_max_age": 1},
        pytest.param(
            {"pool": {"min_size": 1, "max_size": 4, "max_lifetime": 1.0}},
            marks=pytest.mark.skipif(django.VERSION < (5, 1), reason="Django's pool exists from 5.1"),
        ),
    ],
    ids=["persistent", "pool"],
)
def test_no_request_fails_while_the_password_rotates_every_second(
    tmp_path: Path, pg_server_factory: Callable[..., PostgresServer], keys: dict[str, Any]
) -> None:
    from django.db import connections
    from psycopg import sql

    server = pg_server_factory()
    CALLS.reset(server.password)
    alias = f"rotating_{'pool' if 'pool' in keys else 'persistent'}"
    databases = configure(tmp_path, {alias: pg_alias(server, **keys)})
    gate, stop = Gate(), threading.Event()
    done: list[int] = []
    failures: list[str] = []
    after_rotation: list[int] = []
    with using_databases(databases, routers=[]):
        workers = [threading.Thread(target=run_requests(alias, gate, stop, done, failures)) for _ in range(3)]
        for worker in workers:
            worker.start()
        try:
            for _ in range(4):
                time.sleep(1.0)
                with gate.rotation():
                    password = secrets.token_urlsafe(18)
                    server.psql(
                        sql.SQL("ALTER ROLE {} PASSWORD {}")
                        .format(sql.Identifier(server.user), sql.Literal(password))
                        .as_string(None)
                    )
                    with CALLS.lock:
                        CALLS.password = password
                        CALLS.generation += 1
                    after_rotation.append(len(done))
            time.sleep(1.0)
        finally:
            stop.set()
            for worker in workers:
                worker.join(30)
            if "pool" in keys:
                connections[alias].close_pool()
    counts = dict(CALLS.by_generation)
    print(
        f"rotation ({alias}): {len(done)} requests, 4 rotations, provider calls by password generation: {counts}"
    )
    assert failures == []
    # Requests went on after every rotation, on connections opened with the new passwords.
    assert all(
        later > earlier
        for earlier, later in zip(after_rotation, [*after_rotation[1:], len(done)], strict=True)
    )
    assert sorted(generation for generation, n in counts.items() if n) == [0, 1, 2, 3, 4]
