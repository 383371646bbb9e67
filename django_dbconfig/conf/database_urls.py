"""Expand a database URL into alias keys, with dj-database-url doing the parsing."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from django_dbconfig.backends import BACKENDS
from django_dbconfig.backends.mysql.settings import SSLMODE_OF
from django_dbconfig.conf.layer import Value, coerce, make_values
from django_dbconfig.core.errors import DbConfigError, did_you_mean
from django_dbconfig.core.keys import CONNECTION_KEYS, KEYS, OBJECT_KEYS

# Engines dj-database-url can name, and the backend family each speaks.
ENGINE_FAMILIES = {
    "django.db.backends.postgresql": ("postgresql", None),
    "django.db.backends.mysql": ("mysql", None),
    "django.db.backends.sqlite3": ("sqlite", None),
    "django.contrib.gis.db.backends.postgis": ("postgresql", "django.contrib.gis.db.backends.postgis"),
    "django.contrib.gis.db.backends.mysql": ("mysql", "django.contrib.gis.db.backends.mysql"),
    "django.contrib.gis.db.backends.spatialite": ("sqlite", "django.contrib.gis.db.backends.spatialite"),
    "timescale.db.backends.postgresql": ("postgresql", "timescale.db.backends.postgresql"),
    "timescale.db.backends.postgis": ("postgresql", "timescale.db.backends.postgis"),
}
# Connection keys a URL may carry in its query string.
URL_QUERY_KEYS = frozenset({"target_session_attrs", "load_balance_hosts"})
SUPPORTED_SCHEMES = "postgresql://, postgres://, postgis://, mysql://, mariadb://, sqlite:// or spatialite://"
# SQLAlchemy-style driver suffixes (postgresql+psycopg://): one URL serves Django and
# SQLAlchemy or Alembic beside it. Django picks its own driver, so the suffix is dropped.
DRIVER_SUFFIXES: dict[str, tuple[str, ...]] = {
    "postgresql": ("psycopg", "psycopg2", "psycopg2cffi", "asyncpg", "pg8000"),
    "postgres": ("psycopg", "psycopg2", "psycopg2cffi", "asyncpg", "pg8000"),
    "postgis": ("psycopg", "psycopg2", "asyncpg"),
    "mysql": ("mysqldb", "pymysql", "mysqlconnector", "aiomysql", "asyncmy", "mariadbconnector", "cymysql"),
    "mariadb": ("mariadbconnector", "mysqldb", "pymysql", "mysqlconnector", "aiomysql", "asyncmy"),
    "sqlite": ("pysqlite", "aiosqlite", "pysqlcipher"),
    "spatialite": ("pysqlite",),
}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9.-]*)(?:\+([A-Za-z0-9_]+))?://")
_NO_USERINFO = ("sqlite", "spatialite")
# A Unix socket directory written where the host goes (Cloud SQL's /cloudsql/PROJECT:REGION:INSTANCE):
# scheme://user:password@//socket/dir/name, the directory unencoded.
_RAW_SOCKET = re.compile(r"^([^:/]+://(?:[^/?#@]*@)?)//([^?#]*)/([^/?#]+)([?#].*)?$")
# Query parameters that name a Unix socket directory, and so the host.
_SOCKET_PARAMETERS = ("host", "unix_socket")
_registered = False


def _parse(url: str) -> dict[str, Any]:
    global _registered  # noqa: PLW0603 - one-time registration of our scheme
    import dj_database_url  # only for a URL: not on the path of every settings.py

    if not _registered:
        # dj-database-url has no mariadb:// scheme; it is MySQL's protocol.
        dj_database_url.register("mariadb", "django.db.backends.mysql")
        _registered = True
    return dict(dj_database_url.parse(url))


def split_hosts(url: str) -> tuple[str, list[str], list[str]]:
    """A URL with several hosts ("pg-a:5432,pg-b:5433") as one with the first host alone, its hosts and ports.

    dj-database-url (through urllib) cannot read a port in a list of hosts, so the
    list is taken out before it parses the rest. Ports are "" where a host has none.
    A URL with one host comes back unchanged, with empty lists.
    """
    scheme, sep, rest = url.partition("://")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, hostlist = netloc.rpartition("@")
    if not sep or "," not in hostlist:
        return url, [], []
    hosts, ports = [], []
    for part in hostlist.split(","):
        if part.startswith("["):  # [IPv6]:port
            host, _, after = part[1:].partition("]")
            port = after.removeprefix(":")
        else:
            host, _, port = part.partition(":")
        hosts.append(host)
        ports.append(port)
    return f"{scheme}{sep}{userinfo}{at}{hostlist.split(',')[0]}{tail}", hosts, ports


def split_scheme(url: str, where: str) -> tuple[str, str]:
    """(scheme, the URL with any +driver suffix dropped); the error never shows the URL."""
    match = _SCHEME.match(url)
    if match is None:
        raise DbConfigError(
            f"{where}: the URL does not start with scheme:// (e.g. postgresql://). "
            "Check the form scheme://user:password@host:port/name."
        )
    scheme, driver = match.group(1).lower(), match.group(2)
    if driver is not None:
        known = DRIVER_SUFFIXES.get(scheme, ())
        if driver.lower() not in known:
            listed = "; ".join(f"{base}+ {', '.join(names)}" for base, names in DRIVER_SUFFIXES.items())
            raise DbConfigError(
                f'{where}: the URL scheme "{scheme}+{driver}" names a driver django-dbconfig does not '
                f"know. Known driver suffixes: {listed}; or no suffix ({SUPPORTED_SCHEMES})."
            )
        url = scheme + url[match.end(1) + 1 + len(driver) :]
    if scheme not in _NO_USERINFO:
        # A user or password with an unescaped / ? or # ends the host part early, and the rest
        # (with the password) would land in the name or the options: refuse it.
        tail = url[url.index("://") + 3 :]
        after_host = re.split(r"[/?#]", tail, maxsplit=1)[1:]
        if after_host and "@" in after_host[0]:
            raise DbConfigError(
                f"{where}: the URL has an @ after the host part, so the user name or password holds "
                "a / ? or # that is not percent-encoded. Encode them (%2F, %3F, %23)."
            )
    return scheme, url


def expand_url(url: Value, *, alias: str) -> dict[str, Value]:
    """Return the keys a URL stands for, each tagged with the URL's origin."""
    origin = url.origin
    scheme, text = split_scheme(url.value, f'{origin} (alias "{alias}")')
    raw_socket = _RAW_SOCKET.match(text) if scheme not in _NO_USERINFO else None
    if raw_socket is not None:
        # The same URL with the socket directory percent-encoded as its host, as libpq and
        # dj-database-url read it: HOST the directory, NAME the database.
        prefix, directory, name, rest = raw_socket.groups()
        text = f"{prefix}{quote('/' + directory, safe='')}/{name}{rest or ''}"
    single, hosts, ports = split_hosts(text)
    try:
        parsed = _parse(single)
    except ValueError as exc:
        if type(exc).__name__ == "UnknownSchemeError":
            raise DbConfigError(
                f'{origin} (alias "{alias}"): the URL scheme "{scheme}" is not supported. '
                f"Use {SUPPORTED_SCHEMES}."
            ) from None
        # The message of the parser may echo the URL, password and all.
        raise DbConfigError(
            f'{origin} (alias "{alias}"): the URL is malformed. Check the form '
            "scheme://user:password@host:port/name and percent-encode special characters "
            "in the user name and password."
        ) from None
    family = ENGINE_FAMILIES.get(str(parsed.get("ENGINE")))
    if family is None:
        raise DbConfigError(
            f'{origin} (alias "{alias}"): the URL scheme "{scheme}" names a backend '
            f"django-dbconfig does not configure. Use {SUPPORTED_SCHEMES}."
        )
    backend, engine = family
    if scheme == "mariadb":
        backend = "mariadb"
    raw: dict[str, Any] = {"backend": backend}
    if engine:
        raw["engine"] = engine
    for django_key, key in (
        ("HOST", "host"),
        ("PORT", "port"),
        ("NAME", "name"),
        ("USER", "user"),
        ("PASSWORD", "password"),
    ):
        if parsed.get(django_key) not in (None, ""):
            raw[key] = parsed[django_key]
    if hosts:
        # Several hosts: each needs a name; ports are one for all, or one per host.
        if not all(hosts) or (any(ports) and not all(ports)):
            raise DbConfigError(
                f'{origin} (alias "{alias}"): the URL lists several hosts, but not every one has a name '
                "and, where ports are given, a port. Write scheme://user@host-a:5432,host-b:5433/name."
            )
        raw["host"] = hosts
        if any(ports):
            raw["port"] = ports if len(set(ports)) > 1 else ports[0]
    values = {
        key: Value(coerce(key, item, origin, text=key in ("host", "port"), alias=alias), origin, url.rank)
        for key, item in raw.items()
    }
    for name, option in dict(parsed.get("OPTIONS") or {}).items():
        found = _option(name, option, url, alias, backend=backend if engine is None else None)
        if "host" in found and "host" in values:
            raise DbConfigError(
                f'{origin} (alias "{alias}"): the URL has a host and a {name} query parameter. Write the '
                "socket directory as the host, percent-encoded: scheme://user@%2Fcloudsql%2FPROJECT%3AREGION"
                "%3AINSTANCE/name, or as ?host=/cloudsql/... with no host."
            )
        values.update(found)
    return values


def _option(name: str, option: Any, url: Value, alias: str, *, backend: str | None) -> dict[str, Value]:
    """Map one query option to an alias key where it names one, else to a driver option.

    Key names match in any case (`CONN_MAX_AGE=600`). A parameter that is neither a key
    nor a driver option of the backend is an error (`backend` None: a third-party engine's
    URL, whose options are its own).
    """
    origin = url.origin
    if name.lower() in KEYS and name.lower() not in OBJECT_KEYS:
        name = name.lower()
    if name in _SOCKET_PARAMETERS and isinstance(option, str) and option.startswith("/"):
        name = "host"
    if name == "options" and isinstance(option, str) and option.startswith("-c search_path="):
        # dj-database-url turns ?currentSchema=x into this libpq option.
        name, option = "search_path", option.removeprefix("-c search_path=")
    elif name == "ssl" and isinstance(option, dict) and set(option) == {"ca"}:
        name, option = "sslrootcert", option["ca"]
    elif name in {"ssl_mode", "ssl-mode"} and str(option).upper() in SSLMODE_OF:
        name, option = "sslmode", SSLMODE_OF[str(option).upper()]
    if (
        name in KEYS
        and (name not in CONNECTION_KEYS or name in URL_QUERY_KEYS)
        and name not in OBJECT_KEYS
        and name != "url"
    ):
        if isinstance(option, list):
            raise DbConfigError(f'{origin} (alias "{alias}"): the URL gives {name} more than once.')
        text = option if isinstance(option, str) else str(option).lower()
        return make_values(name, coerce(name, text, origin, text=True, alias=alias), origin, url.rank)
    if name == "host":
        return make_values("host", coerce("host", option, origin, text=True, alias=alias), origin, url.rank)
    family = BACKENDS.get(backend) if backend is not None else None
    if family is not None and name not in family.driver_options:
        in_query = {key for key in KEYS if key not in CONNECTION_KEYS or key in URL_QUERY_KEYS}
        url_keys = sorted(in_query - OBJECT_KEYS - {"url"})
        raise DbConfigError(
            f'{origin} (alias "{alias}"): the URL\'s query parameter "{name}" is neither a key nor an '
            f"option of the {family.display} driver, which would refuse it at connect time."
            + did_you_mean(name, [*url_keys, *family.driver_options])
            + " Remove it from the URL (settings such as reconnect or ssl_require belong to other "
            "frameworks), or set the key it stands for."
        )
    return make_values("options", {name: option}, origin, url.rank)
