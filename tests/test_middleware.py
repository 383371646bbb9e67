"""ReadYourWritesMiddleware without a server: the cookie, its signature, its window, sync and async."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, override_settings

from django_dbconfig import DbConfigError
from django_dbconfig.middleware import SALT, ReadYourWritesMiddleware, pin_window
from django_dbconfig.routers import DatabaseRouter, _state, reset_pins
from tests.apps.shop.models import Order
from tests.test_router import DATABASES, REPLICAS, registered


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    _state.set(None)
    yield
    _state.set(None)


@pytest.fixture
def router(django_db_blocker: Any) -> Iterator[DatabaseRouter]:
    """Replicas on SQLite: the router checks that a replica answers before a request's first read."""
    router = DatabaseRouter(routes={}, replicas=REPLICAS, databases=DATABASES)
    with (
        django_db_blocker.unblock(),
        registered(DATABASES),
        override_settings(DATABASE_ROUTERS=[router], DBCONFIG_PIN_SECONDS="5s"),
    ):
        yield router


def view_writing(router: DatabaseRouter) -> Any:
    def view(request: HttpRequest) -> HttpResponse:
        # What a save() asks the router; the read after it is this request's.
        router.db_for_write(Order)
        return HttpResponse(router.db_for_read(Order))

    return view


def view_reading(router: DatabaseRouter) -> Any:
    return lambda request: HttpResponse(router.db_for_read(Order))


def unsigned(value: str) -> Any:
    """The cookie's value as Django reads it back (its signature and age checked)."""
    request = RequestFactory().get("/")
    request.COOKIES["dbconfig_pin"] = value
    return request.get_signed_cookie("dbconfig_pin", salt=SALT, max_age=5)


def serve(view: Any, cookie: str | None = None) -> HttpResponse:
    """One request through the middleware, with the request signals' reset around it."""
    request = RequestFactory().get("/")
    if cookie is not None:
        request.COOKIES["dbconfig_pin"] = cookie
    reset_pins()
    try:
        response: HttpResponse = ReadYourWritesMiddleware(view)(request)
        return response
    finally:
        reset_pins()


def test_a_write_sets_a_signed_cookie_and_the_next_request_reads_the_primary(router: DatabaseRouter) -> None:
    first = serve(view_writing(router))
    morsel = first.cookies["dbconfig_pin"]
    assert [first.content, morsel["max-age"], morsel["httponly"], morsel["samesite"]] == [
        b"default",
        6,
        True,
        "Lax",
    ]
    assert unsigned(morsel.value) == "default"
    assert serve(view_reading(router), morsel.value).content == b"default"
    # Without the cookie, the same read goes to a replica; a read-only request sets no cookie.
    plain = serve(view_reading(router))
    assert [plain.content in (b"replica1", b"replica2"), "dbconfig_pin" in plain.cookies] == [True, False]


def test_a_forged_or_expired_cookie_pins_nothing(router: DatabaseRouter) -> None:
    response = HttpResponse()
    response.set_signed_cookie("dbconfig_pin", "default", salt=SALT)  # as the middleware signs it
    signed = response.cookies["dbconfig_pin"].value
    assert serve(view_reading(router), signed).content == b"default"  # genuine and fresh
    assert serve(view_reading(router), "default:forged").content != b"default"
    assert serve(view_reading(router), "").content != b"default"
    time.sleep(1.1)
    with override_settings(DBCONFIG_PIN_SECONDS=1):
        assert serve(view_reading(router), signed).content != b"default"


def test_the_async_middleware_sees_the_views_writes(router: DatabaseRouter) -> None:
    from asgiref.sync import sync_to_async

    write = view_writing(router)

    async def view(request: HttpRequest) -> HttpResponse:
        response: HttpResponse = await sync_to_async(write)(request)
        return response

    async def main() -> HttpResponse:
        response: HttpResponse = await ReadYourWritesMiddleware(view)(RequestFactory().get("/"))
        return response

    assert asyncio.run(main()).cookies["dbconfig_pin"].value.startswith("default:")


def test_the_window_is_at_least_the_largest_max_replica_lag() -> None:
    lagging = DatabaseRouter(
        routes={}, replicas=REPLICAS, databases=DATABASES, max_replica_lag={"replica2": 9}
    )
    try:
        with override_settings(DATABASE_ROUTERS=[lagging], DBCONFIG_PIN_SECONDS="2s"):
            assert pin_window() == 9.0
        with override_settings(DATABASE_ROUTERS=[lagging], DBCONFIG_PIN_SECONDS="30s"):
            assert pin_window() == 30.0
    finally:
        lagging.stop_measuring()


def test_without_a_window_the_middleware_refuses_to_start_and_says_what_to_set() -> None:
    plain = DatabaseRouter(routes={}, replicas=REPLICAS, databases=DATABASES)
    with override_settings(DATABASE_ROUTERS=[plain]), pytest.raises(DbConfigError) as caught:
        ReadYourWritesMiddleware(lambda request: HttpResponse())
    assert str(caught.value) == (
        "ReadYourWritesMiddleware: no pin window. Set settings.DBCONFIG_PIN_SECONDS (how long a client "
        'reads from the primary after it writes, e.g. "5s"), or max_replica_lag on the replicas (the '
        "window is then the largest of them)."
    )
    with (
        override_settings(DATABASE_ROUTERS=[plain], DBCONFIG_PIN_SECONDS="soon"),
        pytest.raises(DbConfigError) as bad,
    ):
        pin_window()
    assert str(bad.value).startswith("settings.DBCONFIG_PIN_SECONDS: expected a duration such as 30")
