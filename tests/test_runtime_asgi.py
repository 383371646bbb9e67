"""Tenants under ASGI: uvicorn serves a project whose tenants are added at startup and picked per request.

The project is the one docs/runtime-databases.md describes: tenants from a file added in
an AppConfig.ready(), a middleware that picks the tenant from the host name with
use_database(), a sync view, an async view (the async ORM), and a view that opens a
runtime_database() for the length of the request. Concurrent requests for four tenants
each see only their tenant's rows, and the per-request aliases leave no session behind.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.servers import PostgresServer, free_port

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
TENANTS = ("alpha", "bravo", "charlie", "delta")

FILES = {
    "tenantsite/__init__.py": "",
    "tenantsite/settings.py": """\
from pathlib import Path

from tests.settings import *  # noqa: F403

from django_dbconfig import build_databases

BASE_DIR = Path(__file__).resolve().parent
INSTALLED_APPS = [*INSTALLED_APPS, "tenantsite.apps.TenantsConfig"]  # noqa: F405
DATABASES = build_databases(BASE_DIR)
DATABASE_ROUTERS = ["django_dbconfig.routers.DatabaseRouter"]
MIDDLEWARE = ["tenantsite.middleware.TenantMiddleware"]
ROOT_URLCONF = "tenantsite.urls"
ALLOWED_HOSTS = ["*"]
DEBUG = False
""",
    "tenantsite/apps.py": """\
import json
from pathlib import Path

from django.apps import AppConfig
from django.conf import settings

from django_dbconfig import add_database


class TenantsConfig(AppConfig):
    name = "tenantsite"

    def ready(self) -> None:
        tenants = json.loads(Path(settings.BASE_DIR, "tenants.json").read_text())
        for tenant in tenants:
            add_database(f"tenant_{tenant['host']}", {"search_path": [tenant["schema"]]}, like="default")
""",
    "tenantsite/middleware.py": """\
from django.db import connections
from django.http import HttpResponseNotFound

from django_dbconfig.routers import use_database


class TenantMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        alias = "tenant_" + request.get_host().split(".", 1)[0]
        if alias not in connections.settings:
            return HttpResponseNotFound("No such tenant.")
        with use_database(alias):
            return self.get_response(request)
""",
    "tenantsite/views.py": """\
from django.http import JsonResponse

from django_dbconfig import runtime_database
from tests.apps.shop.models import Order


def orders(request):
    return JsonResponse({"orders": list(Order.objects.order_by("id").values_list("reference", flat=True))})


async def orders_async(request):
    return JsonResponse({"orders": [order.reference async for order in Order.objects.order_by("id")]})


def export(request, schema):
    keys = {"search_path": [schema], "application_name": "per-request"}
    with runtime_database(keys, like="default") as alias:
        references = list(Order.objects.using(alias).order_by("id").values_list("reference", flat=True))
    return JsonResponse({"orders": references})
""",
    "tenantsite/urls.py": """\
from django.urls import path

from tenantsite import views

urlpatterns = [
    path("orders/", views.orders),
    path("orders-async/", views.orders_async),
    path("export/<str:schema>/", views.export),
]
""",
    "tenantsite/asgi.py": """\
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenantsite.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
""",
}


@pytest.fixture
def site(tmp_path: Path, pg_plain_server: PostgresServer) -> Iterator[tuple[int, PostgresServer]]:
    server = pg_plain_server
    schemas = {tenant: f"t_{tenant}_{os.getpid()}" for tenant in TENANTS}
    for tenant, schema in schemas.items():
        server.psql(
            f"CREATE SCHEMA {schema} AUTHORIZATION app; "
            f"CREATE TABLE {schema}.shop_order (id bigserial PRIMARY KEY, reference varchar(40) NOT NULL); "
            f"ALTER TABLE {schema}.shop_order OWNER TO app; "
            f"INSERT INTO {schema}.shop_order (reference) VALUES ('{tenant}-1'), ('{tenant}-2')",
            dbname="app",
        )
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "tenantsite/dbconfig.json").write_text(
        json.dumps(
            {"databases": {"default": {"url": server.url(), "sslmode": "disable", "conn_max_age": 60}}}
        )
    )
    (tmp_path / "tenantsite/tenants.json").write_text(
        json.dumps([{"host": tenant, "schema": schema} for tenant, schema in schemas.items()])
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DBCONFIG_", "PG")) and "DATABASE_URL" not in key
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    port = free_port()
    log_path = tmp_path / "uvicorn.log"
    with log_path.open("wb") as log:
        uvicorn = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tenantsite.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--no-access-log"],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            if uvicorn.poll() is not None:
                pytest.fail(f"uvicorn exited with {uvicorn.returncode}:\n{log_path.read_text()[-2000:]}")
            try:
                get(port, "alpha", "/orders/")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"uvicorn did not answer:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.2)
        yield port, server
    finally:
        uvicorn.terminate()
        try:
            uvicorn.wait(30)
        except subprocess.TimeoutExpired:
            uvicorn.kill()
            uvicorn.wait(30)
        server.psql("; ".join(f"DROP SCHEMA IF EXISTS {s} CASCADE" for s in schemas.values()), dbname="app")


def get(port: int, tenant: str, path: str) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path, headers={"Host": f"{tenant}.example.test"})
        response = connection.getresponse()
        body = response.read()
        return response.status, json.loads(body) if response.status == 200 else body
    finally:
        connection.close()


def test_concurrent_requests_each_see_only_their_tenant(site: tuple[int, PostgresServer]) -> None:
    port, server = site
    paths = {
        tenant: ["/orders/", "/orders-async/", f"/export/t_{tenant}_{os.getpid()}/"] for tenant in TENANTS
    }
    calls = [(tenant, path) for _ in range(5) for tenant in TENANTS for path in paths[tenant]]
    with ThreadPoolExecutor(max_workers=12) as clients:
        answers = list(clients.map(lambda call: (call, get(port, *call)), calls))
    for (tenant, path), (status, body) in answers:
        assert (tenant, path, status, body) == (tenant, path, 200, {"orders": [f"{tenant}-1", f"{tenant}-2"]})
    assert get(port, "echo", "/orders/")[0] == 404

    def per_request_sessions() -> int:
        rows = server.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'per-request'", dbname="postgres"
        )
        return int(rows[0][0])

    # Every per-request alias was removed at the end of its request, its session with it.
    assert per_request_sessions() == 0
