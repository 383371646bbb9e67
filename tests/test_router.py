"""DatabaseRouter without a server: routes, replicas, pins, relations and migrations."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db.utils import ConnectionRouter
from django.test import override_settings

from django_dbconfig import DbConfigError, build_databases
from django_dbconfig.routers import DatabaseRouter, _state, pin_to_primary, reset_pins, use_database
from tests.apps.reports.models import DailyTotal
from tests.apps.shop.models import Customer, Order

SQLITE = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
DATABASES = {alias: dict(SQLITE) for alias in ("default", "replica1", "replica2", "analytics", "events")}
REPLICAS = {"default": ("replica1", "replica2")}


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    """Each test starts, and leaves, with nothing pinned in this thread."""
    _state.set(None)
    yield
    _state.set(None)


def make_router(routes: dict[str, str] | None = None, **kwargs: Any) -> DatabaseRouter:
    return DatabaseRouter(
        routes=routes or {"reports": "analytics"},
        replicas=kwargs.pop("replicas", REPLICAS),
        databases=kwargs.pop("databases", DATABASES),
        **kwargs,
    )


def settings_override(**values: Any) -> Any:
    # Overriding DATABASES warns that connections are not reset: the router only reads it.
    warnings.filterwarnings("ignore", message="Overriding setting DATABASES")
    return override_settings(**values)


@contextlib.contextmanager
def registered(databases: dict[str, Any]) -> Iterator[None]:
    """Add aliases to django.db.connections for the block; close and remove them after.

    Only this thread's connections are closed: threads a test starts close their own.
    """
    from django.db import connections

    added = {alias: entry for alias, entry in databases.items() if alias not in connections.settings}
    configured = connections.configure_settings({"default": dict(SQLITE), **added})
    connections.settings.update({alias: configured[alias] for alias in added})
    try:
        yield
    finally:
        for alias in added:
            if hasattr(connections._connections, alias):
                connections[alias].close()
                delattr(connections._connections, alias)
            del connections.settings[alias]


def instance(model: type, db: str | None) -> Any:
    obj = model()
    obj._state.db = db
    return obj


# ---------------------------------------------------------------------------- routes


def test_model_route_beats_app_route() -> None:
    router = make_router({"shop": "analytics", "shop.Customer": "events"})
    assert [router.db_for_write(Order), router.db_for_write(Customer)] == ["analytics", "events"]


def test_model_route_key_ignores_the_case_of_the_model_name() -> None:
    router = make_router({"shop.customer": "events"})
    assert router.db_for_write(Customer) == "events"


def test_unrouted_models_go_to_default() -> None:
    router = make_router({"reports": "analytics"})
    assert [router.db_for_write(Order), router.db_for_write(DailyTotal)] == ["default", "analytics"]


def test_dbconfig_routes_setting_beats_config_routes(tmp_path: Path) -> None:
    databases = build_databases(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                "default": {"backend": "sqlite", "name": "a.sqlite3"},
                "analytics": {"backend": "sqlite", "name": "b.sqlite3"},
            },
            "routes": {"reports": "analytics"},
        },
    )
    with settings_override(DATABASES=databases, DBCONFIG_ROUTES={"shop": "analytics"}):
        router = DatabaseRouter()
    assert [router.db_for_write(Order), router.db_for_write(DailyTotal)] == ["analytics", "default"]


def test_config_routes_are_used_without_the_setting(tmp_path: Path) -> None:
    databases = build_databases(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                "default": {"backend": "sqlite", "name": "a.sqlite3"},
                "analytics": {"backend": "sqlite", "name": "b.sqlite3"},
            },
            "routes": {"reports": "analytics"},
        },
    )
    with settings_override(DATABASES=databases):
        router = DatabaseRouter()
    assert [router.db_for_write(Order), router.db_for_write(DailyTotal)] == ["default", "analytics"]


def test_route_to_unknown_alias_is_an_error_when_the_router_is_created() -> None:
    with (
        settings_override(DATABASES=DATABASES, DBCONFIG_ROUTES={"reports": "analytcs"}),
        pytest.raises(DbConfigError) as caught,
    ):
        DatabaseRouter(replicas={})
    assert str(caught.value) == (
        "settings.DBCONFIG_ROUTES['reports']: route \"reports\" goes to 'analytcs', which is not an "
        'alias in DATABASES. Known aliases: "default", "replica1", "replica2", "analytics" or "events". '
        'Did you mean "analytics"?'
    )


def test_config_route_to_alias_missing_from_databases_names_its_source(tmp_path: Path) -> None:
    build_databases(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                "default": {"backend": "sqlite", "name": "a.sqlite3"},
                "analytics": {"backend": "sqlite", "name": "b.sqlite3"},
            },
            "routes": {"reports": "analytics"},
        },
    )
    hand_edited = {"default": dict(SQLITE)}
    with settings_override(DATABASES=hand_edited), pytest.raises(DbConfigError) as caught:
        DatabaseRouter()
    assert str(caught.value).startswith(
        "override: routes.reports: route \"reports\" goes to 'analytics', which is not an alias in DATABASES."
    )


def test_route_to_a_replica_is_an_error() -> None:
    with pytest.raises(DbConfigError) as caught:
        make_router({"reports": "replica1"})
    assert str(caught.value) == (
        'DatabaseRouter(routes=...): route "reports" goes to the replica "replica1". Route to its '
        'primary "default": reads are sent to replicas automatically.'
    )


@pytest.mark.parametrize("key", ["shop.Order.extra", "", "shop.", 3])
def test_malformed_route_key_is_an_error(key: Any) -> None:
    with pytest.raises(DbConfigError, match="is not a route key"):
        make_router({key: "analytics"})


def test_dbconfig_routes_must_be_a_dict() -> None:
    with (
        settings_override(DATABASES=DATABASES, DBCONFIG_ROUTES=["reports"]),
        pytest.raises(DbConfigError, match="must be a dict"),
    ):
        DatabaseRouter(replicas={})


def test_replica_naming_unknown_alias_is_an_error() -> None:
    with pytest.raises(DbConfigError, match='"replica9" is not an alias in DATABASES'):
        make_router(replicas={"default": ("replica9",)})


def test_replicas_come_from_test_mirror_without_a_config() -> None:
    databases = {**DATABASES, "replica1": {**SQLITE, "TEST": {"MIRROR": "default"}}}
    with settings_override(DATABASES=databases, DBCONFIG_ROUTES={}), pytest.MonkeyPatch.context() as patch:
        patch.setattr("django_dbconfig.conf.config._last_config", None)
        router = DatabaseRouter()
    assert {router.db_for_read(Order) for _ in range(4)} == {"replica1"}
    assert router.db_for_write(Order) == "default"


def test_replicas_come_from_the_config_replica_of(tmp_path: Path) -> None:
    databases = build_databases(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                "default": {"url": "postgresql://app@db.internal/app"},
                "replica": {"url": "postgresql://app@replica.internal/app", "replica_of": "default"},
            }
        },
    )
    with settings_override(DATABASES=databases):
        router = DatabaseRouter()
    assert [router.db_for_read(Order), router.db_for_write(Order)] == ["replica", "default"]


# -------------------------------------------------------------------------- replicas


def test_requests_are_spread_over_replicas_and_writes_go_to_the_primary() -> None:
    router = make_router()
    reads = []
    for _ in range(6):
        reads.append(router.db_for_read(Order))
        reset_pins()  # the request ends
    assert sorted(reads) == ["replica1"] * 3 + ["replica2"] * 3
    assert router.db_for_write(Order) == "default"


def test_one_request_reads_every_model_of_a_primary_from_one_replica() -> None:
    router = make_router()
    first = router.db_for_read(Order)
    assert [router.db_for_read(Customer) for _ in range(5)] + [router.db_for_read(Order)] == [first] * 6
    reset_pins()
    assert router.db_for_read(Order) not in (first, "default")  # the next request, the next replica
    assert router.db_for_write(Order) == "default"


def test_reads_of_an_alias_without_replicas_go_to_it() -> None:
    assert make_router().db_for_read(DailyTotal) == "analytics"


def test_write_pins_reads_of_that_primary_only() -> None:
    router = make_router({"reports": "analytics"}, replicas={**REPLICAS, "analytics": ("events",)})
    assert router.db_for_write(Order) == "default"
    assert [router.db_for_read(Order), router.db_for_read(Customer)] == ["default", "default"]
    assert router.db_for_read(DailyTotal) == "events"


@pytest.mark.parametrize("signal", [request_finished, request_started], ids=["finished", "started"])
def test_request_signals_release_the_pin(signal: Any) -> None:
    router = make_router()
    router.db_for_write(Order)
    signal.send(sender=None)
    assert router.db_for_read(Order) in ("replica1", "replica2")


def test_pin_in_a_worker_thread_does_not_outlive_its_request() -> None:
    router = make_router()
    seen: list[str] = []

    def worker() -> None:
        # One WSGI worker thread serving two requests: the first writes.
        request_started.send(sender=None)
        router.db_for_write(Order)
        seen.append(router.db_for_read(Order))
        request_finished.send(sender=None)
        request_started.send(sender=None)
        seen.append(router.db_for_read(Order))
        request_finished.send(sender=None)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen[0] == "default"
    assert seen[1] in ("replica1", "replica2")


def test_pin_to_primary_sends_reads_to_the_primary_inside_the_block_only() -> None:
    router = make_router()
    with pin_to_primary():
        assert [router.db_for_read(Order), router.db_for_read(DailyTotal)] == ["default", "analytics"]
    assert router.db_for_read(Order) in ("replica1", "replica2")


def test_write_inside_pin_to_primary_stays_pinned_after_the_block() -> None:
    router = make_router()
    with pin_to_primary():
        router.db_for_write(Order)
    assert router.db_for_read(Order) == "default"


def test_use_database_sends_reads_and_writes_to_the_alias() -> None:
    router = make_router()
    with registered(DATABASES), use_database("events"):
        assert [router.db_for_read(Order), router.db_for_write(DailyTotal)] == ["events", "events"]
        with use_database("analytics"):
            assert router.db_for_read(Order) == "analytics"
        assert router.db_for_read(Order) == "events"
    assert router.db_for_read(DailyTotal) == "analytics"


def test_use_database_with_unknown_alias_is_an_error() -> None:
    with pytest.raises(DbConfigError) as caught, use_database("defualt"):
        pass
    assert str(caught.value) == (
        'use_database("defualt"): there is no such alias in DATABASES. Known aliases: "default". '
        'Did you mean "default"?'
    )


def test_threads_never_share_a_pin() -> None:
    router = make_router()
    barrier = threading.Barrier(8)
    seen: dict[int, str] = {}

    def worker(index: int) -> None:
        if index % 2 == 0:
            router.db_for_write(Order)
        barrier.wait()  # every writer has written before anyone reads
        seen[index] = router.db_for_read(Order)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [seen[i] == "default" for i in range(8)] == [True, False] * 4
    assert router.db_for_read(Order) != "default"


def test_asyncio_tasks_never_share_a_pin() -> None:
    router = make_router()

    async def writer(written: asyncio.Event) -> str:
        router.db_for_write(Order)
        written.set()
        await asyncio.sleep(0)
        return router.db_for_read(Order)

    async def reader(written: asyncio.Event) -> str:
        await written.wait()
        return router.db_for_read(Order)

    async def main() -> list[str]:
        written = asyncio.Event()
        results = await asyncio.gather(writer(written), reader(written))
        return [*results, router.db_for_read(Order)]  # the parent task is not pinned either

    writer_db, reader_db, parent_db = asyncio.run(main())
    assert writer_db == "default"
    assert {reader_db, parent_db} <= {"replica1", "replica2"}


# ------------------------------------------------------------- relations, migrations


def test_allow_relation_within_an_alias_and_its_replicas() -> None:
    router = make_router()
    assert router.allow_relation(instance(Order, "default"), instance(Customer, "replica2")) is True
    assert router.allow_relation(instance(Order, "replica1"), instance(Customer, "replica2")) is True
    assert router.allow_relation(instance(DailyTotal, None), instance(DailyTotal, "analytics")) is True


def test_allow_relation_across_aliases_has_no_opinion_and_django_refuses() -> None:
    router = make_router()
    order, total = instance(Order, "default"), instance(DailyTotal, "analytics")
    assert router.allow_relation(order, total) is None
    assert ConnectionRouter([router]).allow_relation(order, total) is False


def test_allow_migrate_puts_each_model_on_its_own_alias_only() -> None:
    router = make_router({"reports": "analytics", "shop.Customer": "events"})
    table = {
        db: sorted(
            label
            for label, model in (
                ("shop.order", "order"),
                ("shop.customer", "customer"),
                ("reports.dailytotal", "dailytotal"),
                ("auth.user", "user"),
            )
            if router.allow_migrate(db, label.split(".")[0], model_name=model)
        )
        for db in DATABASES
    }
    assert table == {
        "default": ["auth.user", "shop.order"],
        "replica1": [],
        "replica2": [],
        "analytics": ["reports.dailytotal"],
        "events": ["shop.customer"],
    }


def test_allow_migrate_without_model_name_follows_the_app_route() -> None:
    router = make_router()
    assert [router.allow_migrate(db, "reports") for db in ("default", "analytics", "replica1")] == [
        False,
        True,
        False,
    ]


def test_repr_shows_routes_and_replicas() -> None:
    assert repr(make_router({"reports": "analytics"})) == (
        "DatabaseRouter(routes={'reports': 'analytics'}, replicas={'default': ('replica1', 'replica2')})"
    )


# ------------------------------------------------------------- through Django requests

_request_router: DatabaseRouter | None = None


def _view(request: Any) -> Any:
    from django.http import HttpResponse

    assert _request_router is not None
    if request.GET.get("write"):
        _request_router.db_for_write(Order)
    return HttpResponse(_request_router.db_for_read(Order))


urlpatterns = [__import__("django.urls").urls.path("read/", _view)]


@pytest.fixture
def request_router() -> Iterator[DatabaseRouter]:
    global _request_router  # noqa: PLW0603 - the views above read it
    _request_router = make_router()
    with override_settings(ROOT_URLCONF=__name__):
        yield _request_router
    _request_router = None


def test_a_write_pins_the_rest_of_its_request_only(request_router: DatabaseRouter) -> None:
    from django.test import Client

    client = Client()
    assert client.get("/read/", {"write": "1"}).content == b"default"
    assert client.get("/read/").content in (b"replica1", b"replica2")
    assert request_router.db_for_read(Order) in ("replica1", "replica2")


def test_a_write_pins_the_rest_of_its_async_request_only(request_router: DatabaseRouter) -> None:
    from django.test import AsyncClient

    async def requests() -> list[bytes]:
        client = AsyncClient()
        first = await client.get("/read/", {"write": "1"})
        second = await client.get("/read/")
        return [first.content, second.content]

    first, second = asyncio.run(requests())
    assert first == b"default"
    assert second in (b"replica1", b"replica2")
