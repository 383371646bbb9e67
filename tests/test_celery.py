"""django_dbconfig.contrib.celery with a real worker (prefork and threads pools) and a real broker (Redis).

Celery's own Django fix-up is off in the worker (tests/celery_worker.py), so every
outcome here is this project's hooks': read-your-writes pins of one task never reach
the next, the first task after a database restart succeeds, and pooled connections go
back to their pool after each task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.celery_worker import (
    BROKER,
    HAS_POOL,
    Streams,
    celery_worker,
    pin_stream,
    pooled_stream,
    restart_stream,
)
from tests.conftest import server_missing
from tests.servers import PostgresServer, serving

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]


@pytest.fixture(scope="module")
def redis_broker() -> str:
    import redis

    try:
        redis.Redis.from_url(BROKER, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        server_missing("Redis on 127.0.0.1:6379", "bash scripts/services.sh", exc)
    return BROKER


@pytest.mark.parametrize(("pool", "concurrency"), [("prefork", 2), ("threads", 4)])
def test_celery_tasks_reset_pins_and_survive_a_database_restart(
    redis_broker: str, tmp_path: Path, pool: str, concurrency: int
) -> None:
    with serving("throwaway PostgreSQL", lambda: PostgresServer().__enter__()) as server:
        streams = Streams()
        with celery_worker(tmp_path, url=server.url(), pool=pool, concurrency=concurrency) as worker:
            pin_stream(worker, streams)
            restart_stream(worker, server, streams)
            if pool == "threads" and HAS_POOL:
                pooled_stream(worker, streams)
    assert (streams.tasks, streams.pinned_tasks) == (20, 0), streams.summary()
    assert all(isinstance(outcome, dict) for outcome in streams.before_restart), streams.before_restart
    # While the server is down tasks fail; the first one after it is back succeeds, and so do the rest.
    assert all(isinstance(outcome, str) for outcome in streams.during_outage), streams.during_outage
    assert all(isinstance(outcome, dict) for outcome in streams.after_restart), streams.after_restart
    # A persistent connection per worker process (or thread), kept from task to task.
    workers = {outcome["worker"] for outcome in streams.after_restart}
    sessions = {outcome["session"] for outcome in streams.after_restart}
    assert len(sessions) <= (concurrency if pool == "threads" else len(workers) * 1), streams.after_restart
    assert streams.pooled_failed == [], streams.summary()


class Order:
    """Shaped like a model, as far as the router looks."""

    class _meta:  # a model's options
        app_label = "shop"
        model_name = "order"
        label = "shop.Order"
        label_lower = "shop.order"


def replica_router() -> Any:
    from django_dbconfig.routers import DatabaseRouter

    return DatabaseRouter(replicas={"default": ["replica"]}, databases={"default": {}, "replica": {}})


def test_connect_is_idempotent_and_leaves_eager_tasks_to_their_caller() -> None:
    from celery import Celery, signals

    from django_dbconfig.contrib import celery as hooks
    from django_dbconfig.routers import reset_pins, written_primaries

    app = Celery("eager", broker="memory://", backend="cache+memory://")
    app.conf.task_always_eager = True
    router = replica_router()
    try:
        hooks.connect(app)
        hooks.connect(app)
        ours = [r for r in signals.task_prerun.receivers if "django_dbconfig" in str(r[0])]
        assert len(ours) == 1

        @app.task
        def pins() -> list[str]:
            return sorted(written_primaries())

        # An eager task runs inside its caller's unit of work: the caller's pins are its own.
        router.db_for_write(Order)
        assert pins.delay().get() == ["default"]
        assert written_primaries() == {"default"}
    finally:
        hooks.disconnect()
        reset_pins()


def test_unit_of_work_resets_pins_even_when_the_job_raises() -> None:
    from django_dbconfig.contrib.tasks import unit_of_work
    from django_dbconfig.routers import reset_pins, written_primaries

    router = replica_router()
    try:
        with pytest.raises(RuntimeError), unit_of_work():
            router.db_for_write(Order)
            assert written_primaries() == {"default"}
            raise RuntimeError("the job failed")
        assert written_primaries() == frozenset()
    finally:
        reset_pins()
