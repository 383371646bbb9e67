"""Short-lived passwords: `password_provider`, called for each new connection.

A provider is a callable `(alias, settings) -> str`, or `-> (secret, expires_at)`
where `expires_at` is an aware datetime or a Unix time. A plain string is asked for
again at every new connection; a secret with an expiry is reused until shortly
before it expires. The secret lives only in the connection parameters handed to the
driver (and in this process's cache): never in DATABASES, in output, logs or errors.

The engines call `with_password` and `attach_to_pool` for every new connection.
Built-in providers are in `django_dbconfig.credentials`.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from django.utils.module_loading import import_string

from django_dbconfig.core.errors import DbConfigError

logger = logging.getLogger(__name__)

# A secret with an expiry is replaced this long before it expires (at most a tenth
# of its lifetime, so short-lived secrets are still reused).
EXPIRY_MARGIN_S = 60.0


class PasswordProviderError(DbConfigError):
    """A password provider could not be imported, failed, or returned something unusable."""


def provider_path(settings: Mapping[str, Any]) -> str | None:
    """The dotted path of a DATABASES entry's password provider, if it has one."""
    extra = settings.get("DBCONFIG") or {}
    path = extra.get("password_provider")
    return str(path) if path else None


@dataclass
class _Cached:
    secret: str = field(repr=False)
    refresh_at: float


class SecretCache:
    """Secrets with an expiry, per alias and provider; one provider call at a time per key."""

    def __init__(self, *, clock: Callable[[], float] = time.time, margin: float = EXPIRY_MARGIN_S) -> None:
        self.clock = clock
        self.margin = margin
        self._cached: dict[tuple[str, ...], _Cached] = {}
        self._locks: dict[tuple[str, ...], threading.Lock] = {}
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"SecretCache(entries={len(self._cached)})"

    def secret(self, alias: str, settings: Mapping[str, Any]) -> str | None:
        """The password for a new connection of `alias`, or None without a provider."""
        path = provider_path(settings)
        if path is None:
            return None
        key = (
            path,
            alias,
            *(str(settings.get(name) or "") for name in ("HOST", "PORT", "USER", "NAME")),
        )
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._cached.get(key)
            if cached is not None and self.clock() < cached.refresh_at:
                return cached.secret
            secret, expires_at = call_provider(path, alias, settings)
            if expires_at is None:
                self._cached.pop(key, None)
            else:
                now = self.clock()
                margin = min(self.margin, max(0.0, expires_at - now) / 10)
                self._cached[key] = _Cached(secret, expires_at - margin)
            return secret

    def clear(self) -> None:
        with self._guard:
            self._cached.clear()

    def new_locks(self) -> None:
        """Fresh locks, the secrets kept: for a forked child, whose parent's threads may have
        held a lock (a provider call in flight) at the fork and will never release it there."""
        self._locks = {}
        self._guard = threading.Lock()


_cache = SecretCache()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_cache.new_locks)


def password_for(alias: str, settings: Mapping[str, Any]) -> str | None:
    """The password for a new connection of `alias` from its provider, or None without one."""
    return _cache.secret(alias, settings)


def with_password(conn_params: dict[str, Any], alias: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Connection parameters with a fresh password from the provider (a copy; unchanged without one)."""
    secret = password_for(alias, settings)
    if secret is None:
        return conn_params
    return {**conn_params, "password": secret}


def attach_to_pool(pool: Any, alias: str, settings: Mapping[str, Any]) -> None:
    """Make a psycopg pool ask the provider for every connection it opens.

    Django builds the pool once with fixed connection keywords; psycopg_pool 3.3
    accepts a callable instead, called for each new connection, so a pool never
    reconnects with an expired secret.
    """
    if provider_path(settings) is None or getattr(pool, "_dbconfig_provider", False):
        return
    import psycopg_pool  # optional (the pool extra): only with pool and a provider

    version = tuple(int(part) for part in psycopg_pool.__version__.split(".")[:2] if part.isdigit())
    if version < (3, 3):
        raise PasswordProviderError(
            f'Alias "{alias}": password_provider with pool needs psycopg_pool 3.3 or later (this is '
            f"{psycopg_pool.__version__}), which asks for the password at each new connection. "
            'Install "psycopg[pool]>=3.3", or use conn_max_age instead of pool.'
        )
    static = dict(pool.kwargs or {})
    static.pop("password", None)

    def kwargs() -> dict[str, Any]:
        return with_password(static, alias, settings)

    pool.kwargs = kwargs
    pool._dbconfig_provider = True


def call_provider(path: str, alias: str, settings: Mapping[str, Any]) -> tuple[str, float | None]:
    """Call the provider at `path`; return its secret and expiry (Unix time) or raise a clear error."""

    where = f'password_provider "{path}" of alias "{alias}"'
    try:
        provider = import_string(path)
    except ImportError as exc:
        raise PasswordProviderError(
            f"{where} cannot be imported: {exc}. Check the dotted path (module.function)."
        ) from None
    view = MappingProxyType({key: value for key, value in settings.items() if key != "PASSWORD"})
    try:
        result = provider(alias, view)
    except PasswordProviderError:
        raise
    except Exception as exc:
        # The provider's own words help; it had no secret to give, so there is none in them.
        raise PasswordProviderError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
    return _unpack(result, where)


def _unpack(result: Any, where: str) -> tuple[str, float | None]:
    expected = "a string, or a (secret, expires_at) pair with expires_at an aware datetime or a Unix time"
    expires_at: Any = None
    if isinstance(result, tuple) and len(result) == 2:
        result, expires_at = result
    if not isinstance(result, str) or not result:
        # Never show the value: it may be the secret in the wrong shape.
        raise PasswordProviderError(f"{where} returned {type(result).__name__}; expected {expected}.")
    if expires_at is None:
        return result, None
    if isinstance(expires_at, datetime.datetime):
        if expires_at.tzinfo is None:
            raise PasswordProviderError(
                f"{where} returned a naive datetime as expires_at; return an aware one "
                "(e.g. datetime.now(timezone.utc) + timedelta(minutes=15))."
            )
        return result, expires_at.timestamp()
    if isinstance(expires_at, (int, float)) and not isinstance(expires_at, bool):
        return result, float(expires_at)
    raise PasswordProviderError(
        f"{where} returned {type(expires_at).__name__} as expires_at; expected {expected}."
    )
