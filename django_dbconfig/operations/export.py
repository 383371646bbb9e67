"""Adopting django-dbconfig: an existing DATABASES as dbconfig.json and .secrets/dbconfig.json.

`export_databases` turns each alias's Django settings into alias keys, the
secrets apart, then renders the result through `load_config` and compares it
with the original before anything is written: the export either renders the
same settings or fails naming what would differ. `write_export` writes the two
files, never over existing ones, the secrets file with mode 0600.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db.utils import ConnectionHandler

from django_dbconfig.backends import BACKENDS, Backend
from django_dbconfig.backends.base.settings import path_key
from django_dbconfig.backends.postgresql.settings import parse_startup
from django_dbconfig.conf.config import load_config
from django_dbconfig.core.durations import format_duration
from django_dbconfig.core.errors import DbConfigError
from django_dbconfig.core.keys import KEYS, POOL_ALWAYS, is_secret_option, pool_mode

# Django's defaults for the keys an alias may leave out (django.db.utils.ConnectionHandler).
_DJANGO_DEFAULTS: Mapping[str, tuple[str, Any]] = {
    "ATOMIC_REQUESTS": ("atomic_requests", False),
    "AUTOCOMMIT": ("autocommit", True),
    "TIME_ZONE": ("time_zone", None),
    "DISABLE_SERVER_SIDE_CURSORS": ("disable_server_side_cursors", False),
}
_TEST_DEFAULTS: Mapping[str, Any] = {
    "CHARSET": None,
    "COLLATION": None,
    "MIGRATE": True,
    "MIRROR": None,
    "NAME": None,
}
_IDENTITY = ("NAME", "USER", "PASSWORD", "HOST", "PORT")
_KNOWN = frozenset(
    {
        "ENGINE",
        *_IDENTITY,
        "CONN_MAX_AGE",
        "CONN_HEALTH_CHECKS",
        "OPTIONS",
        "TEST",
        "DBCONFIG",
        *_DJANGO_DEFAULTS,
    }
)
# Keys whose defaults the export compares with the settings itself.
_DECIDED = frozenset({"port", "conn_max_age", "conn_health_checks"})
SECRETS_MODE = 0o600


@dataclass(frozen=True)
class Export:
    """The two documents of an export. `secrets` is empty when no alias has a secret."""

    config: dict[str, Any]
    secrets: dict[str, Any]


def export_databases(
    databases: Mapping[str, Mapping[str, Any]], *, backends: Mapping[str, str], base_dir: Path
) -> Export:
    """Turn DATABASES into dbconfig.json and secrets documents that render the same settings.

    `backends` names each alias's backend ("postgresql", "mysql", "mariadb" or
    "sqlite"); paths inside `base_dir` are written relative to it, as
    `build_databases(base_dir)` reads them.
    """
    config: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    for alias, settings in databases.items():
        backend = BACKENDS[backends[alias]]
        public, secret = _alias_keys(alias, settings, backend, base_dir)
        config[alias] = public
        if secret:
            secrets[alias] = secret
    export = Export({"databases": config}, {"databases": secrets} if secrets else {})
    _check_round_trip(databases, export, backends, base_dir)
    return export


def write_export(export: Export, directory: Path) -> list[Path]:
    """Write dbconfig.json (and .secrets/dbconfig.json, mode 0600) into `directory`; never overwrite."""
    config_path = directory / "dbconfig.json"
    secrets_path = directory / ".secrets" / "dbconfig.json"
    targets = [config_path, *([secrets_path] if export.secrets else [])]
    existing = [str(path) for path in targets if path.exists()]
    if existing:
        raise DbConfigError(
            f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}: the export "
            "never overwrites. Move the file away, or choose another folder with --output-dir."
        )
    directory.mkdir(parents=True, exist_ok=True)
    _write(config_path, export.config, mode=0o644)
    if export.secrets:
        secrets_path.parent.mkdir(mode=0o700, exist_ok=True)
        _write(secrets_path, export.secrets, mode=SECRETS_MODE)
    return targets


def _write(path: Path, document: Mapping[str, Any], *, mode: int) -> None:
    # O_EXCL: a file that appeared since the check above is still not overwritten.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.fchmod(descriptor, mode)  # whatever the umask
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(json.dumps(document, indent=2) + "\n")


def _alias_keys(
    alias: str, settings: Mapping[str, Any], backend: Backend, base_dir: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The alias's keys without secrets, and its secret keys."""
    unknown = sorted(set(settings) - _KNOWN)
    if unknown:
        raise DbConfigError(
            f'DATABASES["{alias}"]: {", ".join(unknown)} cannot be written in dbconfig.json. Set '
            "them in settings.py after build_databases(), then export the rest."
        )
    keys: dict[str, Any] = {"backend": backend.name}
    secret: dict[str, Any] = {}
    engine = settings.get("ENGINE")
    if engine and not backend.is_family_engine(str(engine)):
        # A third-party engine stays (the engine check says what it loses); Django's own
        # engine becomes this project's engine of the same family, through `backend`.
        keys["engine"] = engine
    name = settings.get("NAME")
    if name:
        keys["name"] = _sqlite_name(str(name), base_dir) if backend.name == "sqlite" else str(name)
    for django_key in ("USER", "HOST"):
        if settings.get(django_key):
            keys[django_key.lower()] = settings[django_key]
    if settings.get("PASSWORD"):
        secret["password"] = settings["PASSWORD"]
    if settings.get("PORT") not in (None, ""):
        keys["port"] = _port(alias, settings["PORT"])

    options = dict(settings.get("OPTIONS") or {})
    option_keys, verbatim = backend.keys_from_options(options, base_dir)
    keys.update(option_keys)
    # What django-dbconfig's engines read (a DATABASES that build_databases() made).
    extra = settings.get("DBCONFIG") or {}
    keys.update({key: extra[key] for key in ("pooler", "password_provider") if extra.get(key)})
    if extra.get("asgi_pool"):  # pool "asgi" (the default) with psycopg_pool's keywords
        keys["pool"] = {"when": "asgi", **extra["asgi_pool"]}
    if isinstance(extra.get("network_timeout"), (int, float)):  # MySQL: seconds, for the engine
        keys["network_timeout"] = format_duration(round(extra["network_timeout"] * 1000))
    keys.update(backend.keys_from_session(extra.get("session_settings") or {}))
    for django_key, (key, default) in (
        ("CONN_MAX_AGE", ("conn_max_age", 0)),
        ("CONN_HEALTH_CHECKS", ("conn_health_checks", False)),
    ):
        value = settings.get(django_key, default)
        # Written where this backend's default differs; a pool sets CONN_MAX_AGE itself.
        if value != backend.defaults.get(key, default) and not (
            key == "conn_max_age" and pool_mode(keys.get("pool")) == POOL_ALWAYS
        ):
            keys[key] = value
    # A default of django-dbconfig that these settings did not ask for (a connect timeout,
    # and any other that null turns off) is turned off, so rendering adds nothing.
    for key in backend.defaults.keys() - keys.keys() - _DECIDED:
        if _accepts_null(key):
            keys[key] = None
        elif key == "pool" and "asgi_pool" not in extra:  # PostgreSQL's ASGI pool: not asked for
            keys[key] = False
    for django_key, (key, default) in _DJANGO_DEFAULTS.items():
        if settings.get(django_key, default) != default:
            keys[key] = settings[django_key]

    _split_secrets(verbatim, "options", keys, secret)
    test = {k: v for k, v in (settings.get("TEST") or {}).items() if _TEST_DEFAULTS.get(k, ...) != v}
    _split_secrets(test, "test", keys, secret)
    _check_json(alias, keys)
    return _ordered(keys), _ordered(secret)


def _split_secrets(
    entries: Mapping[str, Any], key: str, keys: dict[str, Any], secret: dict[str, Any]
) -> None:
    public = {name: value for name, value in entries.items() if not is_secret_option(name)}
    hidden = {name: value for name, value in entries.items() if is_secret_option(name)}
    if public:
        keys[key] = public
    if hidden:
        secret[key] = hidden


def _accepts_null(key: str) -> bool:
    try:
        return KEYS[key].coerce(None, from_env=False) is None
    except ValueError:
        return False


def _sqlite_name(name: str, base_dir: Path) -> str:
    if name == ":memory:" or name.startswith("file:"):
        return name
    return path_key(name, base_dir) or name


def _port(alias: str, value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise DbConfigError(
            f'DATABASES["{alias}"]["PORT"]: expected a port number, got {type(value).__name__}.'
        ) from None
    return port


def _check_json(alias: str, keys: Mapping[str, Any]) -> None:
    for key in ("options", "test", "pool"):
        for name, value in (keys.get(key) or {}).items() if isinstance(keys.get(key), dict) else ():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise DbConfigError(
                    f'DATABASES["{alias}"]["{key.upper() if key != "pool" else "OPTIONS"}"]'
                    f'["{name}"] holds a {type(value).__name__}, which JSON cannot hold. Set it in '
                    "settings.py after build_databases(), then export the rest."
                ) from None


def _ordered(keys: Mapping[str, Any]) -> dict[str, Any]:
    order = {key: index for index, key in enumerate(KEYS)}
    return {key: keys[key] for key in sorted(keys, key=lambda k: order.get(k, len(order)))}


def _check_round_trip(
    databases: Mapping[str, Mapping[str, Any]], export: Export, backends: Mapping[str, str], base_dir: Path
) -> None:
    """Render the export as build_databases() will, and compare it with the original."""

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "dbconfig.json").write_text(json.dumps(export.config))
        (root / ".secrets").mkdir()
        (root / ".secrets" / "dbconfig.json").write_text(json.dumps(export.secrets))
        rendered = load_config(
            base_dir, config_file=root / "dbconfig.json", secrets_dir=root / ".secrets", environ={}
        ).databases()
    for alias, settings in databases.items():
        backend = BACKENDS[backends[alias]]
        before, after = comparable(settings, backend), comparable(rendered[alias], backend)
        differ = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
        if differ:
            # Key names only: the values may be secret.
            raise DbConfigError(
                f'DATABASES["{alias}"]: the export would render {", ".join(differ)} differently. '
                "A relative path is read relative to the output folder by build_databases(): make it "
                "absolute in settings.py. Otherwise write this alias in dbconfig.json by hand."
            )


def comparable(settings: Mapping[str, Any], backend: Backend) -> dict[str, Any]:
    """A DATABASES entry as Django and the driver see it, flattened for comparison.

    Django's defaults are filled in; PORT is text, an empty one meaning the
    backend's default port; a PostgreSQL `options` string is compared by the
    settings it sends (`search_path=app` and `search_path="app"` are one).
    """

    entry = ConnectionHandler({"default": copy.deepcopy(dict(settings))}).settings["default"]
    flat: dict[str, Any] = {}
    for key, value in entry.items():
        if key in ("OPTIONS", "TEST"):
            flat.update({f"{key}.{name}": item for name, item in value.items()})
        else:
            flat[key] = value
    port = flat.get("PORT")
    flat["PORT"] = str(port) if port not in (None, "") else str(backend.defaults.get("port", ""))
    flat["NAME"] = str(flat.get("NAME", ""))
    if backend.is_family_engine(str(flat.get("ENGINE"))):
        # Django's engine, ours or its 0.1 path: the same family's engine after adoption.
        flat["ENGINE"] = backend.engine
    startup = flat.get("OPTIONS.options")
    if backend.name == "postgresql" and isinstance(startup, str):
        flat["OPTIONS.options"] = parse_startup(startup) or startup
    return flat
