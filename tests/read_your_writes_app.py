"""A login-style site for the read-your-writes tests, and a process that serves its next requests.

The test process logs in (the session and the user's last_login are written to the
primary) and gets a redirect; `python -m tests.read_your_writes_app` is the other
process behind the "load balancer": it reads one JSON line per request from stdin
(the cookies), serves GET /whoami/ with Django's test client and answers one JSON
line: who is logged in, and the port of the server that read the session.

Its settings come from the environment variable READ_YOUR_WRITES_SETTINGS (JSON).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from django.contrib.auth import authenticate, login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import path

SESSION_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
PIN_MIDDLEWARE = "django_dbconfig.middleware.ReadYourWritesMiddleware"


def login_view(request: HttpRequest) -> HttpResponse:
    user = authenticate(request, username=request.POST["username"], password=request.POST["password"])
    if user is None:
        return HttpResponse("wrong password", status=403)
    login(request, user)  # writes the session and the user's last_login
    return HttpResponseRedirect("/whoami/")


def whoami(request: HttpRequest) -> JsonResponse:
    from django.contrib.sessions.models import Session

    user = request.user.get_username() if request.user.is_authenticated else None
    # A read routed like the session's own: the server says which one answered.
    key = request.session.session_key or ""
    row = next(
        iter(Session.objects.raw("SELECT %s AS session_key, inet_server_port()::text AS session_data", [key]))
    )
    return JsonResponse({"user": user, "port": int(row.session_data)})


urlpatterns = [path("login/", login_view), path("whoami/", whoami)]


def site_settings(
    databases: dict[str, Any], routes: dict[str, str], *, pin: bool, pin_seconds: float
) -> dict[str, Any]:
    """The settings of the site (both processes), with or without the read-your-writes middleware."""
    return {
        "DATABASES": databases,
        "DBCONFIG_ROUTES": routes,
        "DBCONFIG_PIN_SECONDS": pin_seconds,
        "MIDDLEWARE": [*SESSION_MIDDLEWARE, *([PIN_MIDDLEWARE] if pin else [])],
        "ROOT_URLCONF": "tests.read_your_writes_app",
        "PASSWORD_HASHERS": ["django.contrib.auth.hashers.MD5PasswordHasher"],
        "SESSION_ENGINE": "django.contrib.sessions.backends.db",
    }


def main() -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="tests-only-not-secret",
        USE_TZ=True,
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "django_dbconfig",
        ],
        DATABASE_ROUTERS=["django_dbconfig.routers.DatabaseRouter"],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        ALLOWED_HOSTS=["testserver"],
        **json.loads(os.environ["READ_YOUR_WRITES_SETTINGS"]),
    )
    django.setup()
    from django.test import Client

    print("ready", flush=True)
    for line in sys.stdin:
        client = Client()
        for name, value in json.loads(line).items():
            client.cookies[name] = value
        response = client.get("/whoami/")
        print(json.dumps(response.json()), flush=True)


if __name__ == "__main__":
    main()
