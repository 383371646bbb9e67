"""The health endpoint: the state of every alias as JSON, or as OpenMetrics for Prometheus."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.utils.cache import add_never_cache_headers

from django_dbconfig.health import metrics
from django_dbconfig.health.status import cached, check_aliases, runtime_aliases_probed
from django_dbconfig.runtime.databases import is_runtime

FORMATS = ("json", "openmetrics")


async def database_health(request: HttpRequest) -> HttpResponse:
    """200 when every alias answers, 503 when one does not; `?database=` narrows, `?format=` picks."""
    # Django 4.2's view decorators do not wrap coroutines: the same checks, by hand.
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    response = await _answer(request)
    add_never_cache_headers(response)
    return response


async def _answer(request: HttpRequest) -> HttpResponse:

    asked = request.GET.getlist("database")
    unknown = [alias for alias in asked if alias not in connections]
    if unknown:
        # Runtime aliases (tenants) are not listed: their names are nobody's business here.
        known = [alias for alias in connections if not is_runtime(alias)]
        return JsonResponse(
            {"ok": False, "error": f"unknown database alias: {', '.join(unknown)}", "known": known},
            status=400,
        )
    output = request.GET.get("format", "json")
    if output not in FORMATS:
        return JsonResponse(
            {"ok": False, "error": f"unknown format {output!r}: use json or openmetrics"}, status=400
        )
    # Runtime aliases are probed when named, or when the setting asks for all of them.
    every = runtime_aliases_probed()
    aliases = asked or [alias for alias in connections if every or not is_runtime(alias)]
    # A cached answer costs a few dict lookups; a probe waits on the probing threads,
    # so this thread (or the event loop) only waits, in a worker thread.
    results = cached(aliases)
    if results is None:
        results = await sync_to_async(check_aliases, thread_sensitive=False)(aliases)
    if output == "openmetrics":
        # Metrics name every alias they describe: the tenants only when named.
        # Prometheus reads failures from dbconfig_database_up; a failed scrape would lose them all.
        public = [result for result in results if asked or not is_runtime(result.alias)]
        return HttpResponse(metrics.render(public), content_type=metrics.CONTENT_TYPE)
    staff = await _is_staff(request)
    ok = all(result.ok for result in results)
    # Tenants probed because of the setting are counted, not named, for callers who are not staff.
    shown = [result for result in results if staff or asked or not is_runtime(result.alias)]
    body: dict[str, Any] = {"ok": ok, "databases": [result.as_json(staff=staff) for result in shown]}
    hidden = [result for result in results if result not in shown]
    if hidden:
        body["runtime_databases"] = {"probed": len(hidden), "failed": sum(not r.ok for r in hidden)}
    return HttpResponse(json.dumps(body), content_type="application/json", status=200 if ok else 503)


async def _is_staff(request: HttpRequest) -> bool:
    """Whether the user is staff, when django.contrib.auth's middleware put one on the request."""
    if not hasattr(request, "user"):
        return False
    auser = getattr(request, "auser", None)
    if auser is not None:  # Django 5.0+
        return _staff(await auser())
    # Loading the user may query the session and user tables: not on the event loop.
    return await sync_to_async(lambda: _staff(request.user))()


def _staff(user: Any) -> bool:
    return bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False))
