"""load_config, build_databases and override: sources -> merge -> validate -> render."""

from __future__ import annotations

import contextlib
import contextvars
import copy
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import django

from django_dbconfig.backends import (
    BACKENDS,
    Backend,
    RenderContext,
    backend_for,
    engine_short_names,
    families_taking,
)
from django_dbconfig.backends.base.settings import OptionConflict
from django_dbconfig.backends.postgresql.pooler import check_shared_roles
from django_dbconfig.backends.postgresql.settings import session_settings
from django_dbconfig.conf.inherit import NOT_INHERITED_BY_REPLICAS, inherit, with_replica_defaults
from django_dbconfig.conf.layer import Layer, Origin, Value
from django_dbconfig.conf.merge import Merged, merge
from django_dbconfig.conf.sources import (
    DefaultsSource,
    EnvironSource,
    JsonFile,
    JsonFileSource,
    OverrideSource,
    ProfileSource,
    SecretsFileSource,
    display_path,
)
from django_dbconfig.core.durations import format_duration
from django_dbconfig.core.errors import DbConfigError, ErrorCollector, did_you_mean, one_of
from django_dbconfig.core.keys import (
    DURATION_KEYS,
    KEYS,
    MASK,
    POOL_ALWAYS,
    POOL_ASGI,
    is_secret_option,
    pool_mode,
)
from django_dbconfig.core.types import DatabaseSettings

DEFAULT_ORIGIN = Origin("default")

_overrides: contextvars.ContextVar[tuple[Mapping[str, Any], ...]] = contextvars.ContextVar(
    "django_dbconfig_overrides", default=()
)
_last_lock = threading.Lock()
_last_config: DatabaseConfig | None = None


@dataclass(frozen=True)
class ExplainRow:
    """One effective setting of an alias: its key, display value and source."""

    key: str
    value: str
    source: str


@dataclass(frozen=True, repr=False)
class DatabaseConfig:
    """The validated, rendered configuration. Immutable; secrets never in its repr."""

    _databases: Mapping[str, DatabaseSettings]
    _effective: Mapping[str, Mapping[str, Value]]
    aliases: tuple[str, ...]
    routes: Mapping[str, str]
    route_sources: Mapping[str, str]
    replicas: Mapping[str, tuple[str, ...]]
    vendors: Mapping[str, str]
    sources: tuple[str, ...]
    base_dir: Path
    secrets_file: Path
    _unused: Mapping[str, Mapping[str, Value]] = field(default_factory=dict)
    # The merged `defaults` of every layer: what add_database() applies to a runtime alias.
    defaults: Mapping[str, Value] = field(default_factory=dict)

    def databases(self) -> dict[str, DatabaseSettings]:
        """A fresh copy of the DATABASES dict: callers may change it freely."""
        return copy.deepcopy(dict(self._databases))

    def explain(self, alias: str) -> tuple[ExplainRow, ...]:
        """Each effective key of `alias` with its value (secrets masked) and source.

        A driver option merged with the one the keys generate shows the merged value.
        """
        merged = _merged_options(
            self._alias(alias), self._databases[alias].get("OPTIONS") or {}, BACKENDS[self.vendors[alias]]
        )
        return tuple(_explain_rows(self._alias(alias), merged))

    def unused(self, alias: str) -> tuple[ExplainRow, ...]:
        """Keys set for `alias` that its backend has no use for, set in another layer than the
        one that chose the backend (a password in .secrets/ for an alias a profile moved to
        SQLite): ignored, with their values (secrets masked) and sources."""
        self._alias(alias)
        return tuple(_explain_rows(self._unused.get(alias, {})))

    def typed_rows(self, alias: str, *, unused: bool = False) -> list[tuple[ExplainRow, Any]]:
        """The rows of explain() (or unused()) with each raw value, for typed output."""
        values = self._unused.get(alias, {}) if unused else self._alias(alias)
        rows = self.unused(alias) if unused else self.explain(alias)
        return [(row, values[row.key].value) for row in rows]

    def values(self, alias: str) -> dict[str, Any]:
        """Each effective key of `alias` with its typed value (durations in ms), secrets included."""
        return {key: value.value for key, value in self._alias(alias).items()}

    def effective(self, alias: str) -> Mapping[str, Value]:
        """Each effective key of `alias` as a Value: typed value, origin and layer rank."""
        return self._alias(alias)

    def _alias(self, alias: str) -> Mapping[str, Value]:
        try:
            return self._effective[alias]
        except KeyError:
            raise DbConfigError(
                f'There is no alias "{alias}". Known aliases: {one_of(self.aliases)}.'
                + did_you_mean(alias, self.aliases)
            ) from None

    def holds(self, alias: str, entry: Mapping[str, Any]) -> bool:
        """Whether `entry` (what DATABASES holds for `alias` now) is the one this config built.

        False for an alias it did not build, and for an entry replaced since (a test
        database, an entry rewritten in settings.py): its keys then describe another server.
        """
        built = self._databases.get(alias)
        return built is not None and all(
            str(built.get(key) or "") == str(entry.get(key) or "")
            for key in ("ENGINE", "NAME", "HOST", "PORT", "USER")
        )

    def __repr__(self) -> str:
        return f"DatabaseConfig(aliases={self.aliases!r}, sources={self.sources!r})"


def load_config(
    base_dir: str | os.PathLike[str] | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    secrets_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    environment: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> DatabaseConfig:
    """Read every layer and return the validated configuration."""
    try:
        return _load(base_dir, config_file, secrets_dir, environ, environment, overrides)
    except DbConfigError as exc:
        error = exc
    except RecursionError:
        error = DbConfigError(
            "The database configuration is nested too deeply (a cycle in overrides=?). "
            "Pass plain JSON-shaped mappings."
        )
    except Exception as exc:  # the contract: nothing but DbConfigError escapes
        error = DbConfigError(
            f"Unexpected {type(exc).__name__} while reading the database configuration. "
            "Please report this to django-dbconfig with the traceback."
        )
    # The chain (a KeyError over the whole file, a parser's message with the URL) may
    # hold a secret: drop it. `from None` also hides whatever exception Django was
    # handling when it imported settings (its KeyError: 'dbconfig' in manage.py).
    error.__cause__ = error.__context__ = None
    raise error.with_traceback(None) from None


def build_databases(
    base_dir: str | os.PathLike[str] | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    secrets_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    environment: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, DatabaseSettings]:
    """Return Django's DATABASES dict; keep the config for `manage.py dbconfig`."""
    global _last_config  # noqa: PLW0603 - the one documented piece of shared state
    config = load_config(
        base_dir,
        config_file=config_file,
        secrets_dir=secrets_dir,
        environ=environ,
        environment=environment,
        overrides=overrides,
    )
    with _last_lock:
        _last_config = config
    return config.databases()


def last_config() -> DatabaseConfig | None:
    """The config the last build_databases() call built, if any."""
    return _last_config


@contextlib.contextmanager
def override(mapping: Mapping[str, Any]) -> Iterator[None]:
    """Add a highest-priority layer to every load inside the block (per thread and task)."""
    if not isinstance(mapping, Mapping):
        raise DbConfigError("override(): expected a mapping shaped like dbconfig.json.")
    token = _overrides.set((*_overrides.get(), mapping))
    try:
        yield
    finally:
        _overrides.reset(token)


def _load(
    base_dir: str | os.PathLike[str] | None,
    config_file: str | os.PathLike[str] | None,
    secrets_dir: str | os.PathLike[str] | None,
    environ: Mapping[str, str] | None,
    environment: str | None,
    overrides: Mapping[str, Any] | None,
) -> DatabaseConfig:
    env = os.environ if environ is None else environ
    if not isinstance(env, Mapping):
        raise DbConfigError("environ=: expected a mapping of variable names to strings, like os.environ.")
    base_dir = _path_argument(base_dir, "base_dir=")
    config_file = _path_argument(config_file, "config_file=")
    secrets_dir = _path_argument(secrets_dir, "secrets_dir=")
    for variable in ("DBCONFIG_FILE", "DBCONFIG_SECRETS_DIR"):
        _path_argument(env.get(variable), variable)
    for where, name in (("environment=", environment), ("DBCONFIG_ENV", env.get("DBCONFIG_ENV"))):
        if name is not None and not isinstance(name, str):
            raise DbConfigError(f"{where}: expected a profile name (a string), got {type(name).__name__}.")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise DbConfigError("overrides=: expected a mapping shaped like dbconfig.json.")
    base = Path(base_dir if base_dir is not None else Path.cwd()).resolve()

    explicit_file = config_file if config_file is not None else env.get("DBCONFIG_FILE") or None
    file_path = _resolve(explicit_file, base) if explicit_file else base / "dbconfig.json"
    file_label = display_path(file_path, base)
    if explicit_file and config_file is None:
        file_label = f"{file_label} (from DBCONFIG_FILE)"
    secrets_root = secrets_dir if secrets_dir is not None else env.get("DBCONFIG_SECRETS_DIR") or None
    secrets_path = (_resolve(secrets_root, base) if secrets_root else base / ".secrets") / "dbconfig.json"
    profile = environment if environment is not None else env.get("DBCONFIG_ENV") or None

    main_file = JsonFile(file_path, label=file_label, required=bool(explicit_file), environ=env)
    secrets_file = JsonFile(secrets_path, label=display_path(secrets_path, base), required=False, environ=env)
    file_source = JsonFileSource(main_file)
    secrets_source = SecretsFileSource(secrets_file, profile)
    # Every layer is read even when one is wrong, so that one error lists every wrong value.
    errors = ErrorCollector()
    file_layer = secrets_layer = profile_layer = Layer(file_label)
    with errors.item():
        file_layer = file_source.load(1)
    with errors.item():
        secrets_layer = secrets_source.load(3)
    if profile is not None:
        with errors.item():
            _check_profile(profile, file_source, secrets_source, from_env=environment is None)
            profile_layer = ProfileSource(main_file, profile).load(2)
    lower = [DefaultsSource().load(0), file_layer, profile_layer, secrets_layer]
    known = sorted({alias for layer in lower for alias in layer.databases})
    environ_source = EnvironSource(env, base_dir=base, known_aliases=known)
    override_source = OverrideSource([*_overrides.get(), *([overrides] if overrides is not None else [])])
    environ_layer = override_layer = Layer(file_label)
    with errors.item():
        environ_layer = environ_source.load(4)
    with errors.item():
        override_layer = override_source.load(5)
    errors.raise_if_any()
    layers = [*lower, environ_layer, override_layer]

    merged = merge(layers)
    sources = tuple(repr(s) for s in (file_source, secrets_source, environ_source, override_source))
    defaults: dict[str, Value] = {}
    for layer in layers:
        defaults.update(layer.defaults)
    return _build(merged, base, secrets_path, sources, defaults)


def _path_argument(value: Any, where: str) -> Any:
    """A path argument or variable as given, once it is known to be a usable path."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise DbConfigError(f"{where}: expected a path (a string), got {type(value).__name__}.")
    text = os.fspath(value)
    if not isinstance(text, str) or "\x00" in text:
        raise DbConfigError(f"{where}: the path contains a NUL character (or is bytes). Fix the path.")
    return value


def _resolve(value: str | os.PathLike[str], base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _check_profile(
    name: str, file_source: JsonFileSource, secrets_source: SecretsFileSource, *, from_env: bool
) -> None:
    known = sorted({*file_source.profiles(), *secrets_source.profiles()})
    if name in known:
        return
    where = "DBCONFIG_ENV" if from_env else "environment="
    listed = f"Known environments: {one_of(known)}." if known else "No environments are defined."
    raise DbConfigError(
        f'{where}: unknown environment "{name}". {listed}{did_you_mean(name, known)} '
        f"Add environments.{name} to {file_source.label}, or fix {where}."
    )


def _build(
    merged: Merged,
    base: Path,
    secrets_path: Path,
    sources: tuple[str, ...],
    defaults: Mapping[str, Value],
) -> DatabaseConfig:

    version = (django.VERSION[0], django.VERSION[1])
    aliases = tuple(merged.databases)
    databases: dict[str, DatabaseSettings] = {}
    vendors: dict[str, str] = {}
    effective_all: dict[str, dict[str, Value]] = {}
    unused_all: dict[str, dict[str, Value]] = {}
    errors = ErrorCollector()
    resolved = _with_primaries(merged.databases)
    for alias in aliases:
        with errors.item():
            unused = unused_all[alias] = {}
            backend, effective = effective_values(alias, resolved[alias], aliases, unused)
            ctx = RenderContext(alias=alias, base_dir=base, django_version=version)
            databases[alias] = render_alias(backend, effective, ctx)
            vendors[alias] = backend.name
            effective_all[alias] = effective
    errors.raise_if_any()
    replicas = _replicas(effective_all, vendors)
    _check_shared_roles(effective_all, vendors)
    routes = _routes(merged.routes, aliases, replicas)
    return DatabaseConfig(
        _databases=MappingProxyType(databases),
        _effective=MappingProxyType(effective_all),
        aliases=aliases,
        routes=MappingProxyType({k: v.value for k, v in routes.items()}),
        route_sources=MappingProxyType({k: str(v.origin) for k, v in routes.items()}),
        replicas=MappingProxyType(replicas),
        vendors=MappingProxyType(vendors),
        sources=sources,
        base_dir=base,
        secrets_file=secrets_path,
        _unused=MappingProxyType({alias: MappingProxyType(keys) for alias, keys in unused_all.items()}),
        defaults=MappingProxyType(dict(defaults)),
    )


def effective_values(
    alias: str, values: Mapping[str, Value], aliases: tuple[str, ...], unused: dict[str, Value]
) -> tuple[Backend, dict[str, Value]]:
    """Keep the keys the alias's backend honours; apply its defaults; check what it needs.

    A key the backend has no use for is an error in the layer that chose the backend
    (or when the backend is the built-in default), and ignored elsewhere: it goes to
    `unused`, which `dbconfig` shows.
    """
    chosen = values.get("backend")
    engine = values.get("engine")
    implied = engine_short_names().get(engine.value) if engine is not None else None
    if implied is not None and (chosen is None or chosen.origin == DEFAULT_ORIGIN):
        # `engine: postgis` alone says which backend it is: PostgreSQL.
        chosen = Value(implied, engine.origin, engine.rank)  # type: ignore[union-attr]
    if chosen is None:
        raise DbConfigError(
            f'Alias "{alias}" has no backend: set "backend" or "url" for it '
            f"(e.g. DBCONFIG_{alias.upper()}_URL or databases.{alias}.url)."
            + _alias_hint(alias, aliases, values)
        )
    if engine is not None:
        _check_engine(alias, engine, chosen)
    backend = backend_for(chosen.value, engine.value if engine is not None else None)
    # A third-party engine may read options of its own: they are its business.
    own_engine = engine is None or backend.is_family_engine(str(engine.value))
    effective: dict[str, Value] = {}
    errors = ErrorCollector()
    for key, value in values.items():
        root, _, option = key.partition(".")
        if value.value is None and root == "password":
            continue  # null unsets a password of a lower layer
        usable = root in backend.keys and not (
            root == "options" and own_engine and option not in backend.driver_options
        )
        if root == "options" and value.set_for is not None and not _same_family(value.set_for, backend.name):
            unused[key] = value  # set where another backend was chosen
        elif usable:
            effective[key] = value
        elif value.from_defaults or value.inherited:
            continue  # set for every alias, or taken from a primary that uses it
        elif value.rank != chosen.rank and chosen.origin != DEFAULT_ORIGIN:
            unused[key] = value  # set for the backend another layer chose
        elif root == "options":
            errors.messages.append(
                f'{value.origin} (alias "{alias}"): options.{option} is not an option of '
                f"{backend.display}{_option_family(option)}: its driver would refuse it at connect time."
                + did_you_mean(option, backend.driver_options)
                + " Remove it for this alias, or set engine if a third-party engine reads it."
                + (
                    f' The backend "{backend.name}" is the built-in default here: set "backend" or "url".'
                    if chosen.origin == DEFAULT_ORIGIN
                    else f' The backend "{backend.name}" comes from {chosen.origin}.'
                )
            )
        else:
            errors.messages.append(
                f'{value.origin} (alias "{alias}"): {root} is not supported on {backend.display}. '
                f"{backend.reasons.get(root, 'Remove it for this alias.')}"
                + (
                    f' The backend "{backend.name}" is the built-in default here: set "backend" or "url".'
                    if chosen.origin == DEFAULT_ORIGIN
                    else f' The backend "{backend.name}" comes from {chosen.origin}.'
                )
            )
    errors.raise_if_any()
    for key, default in backend.defaults.items():
        effective.setdefault(key, Value(default, DEFAULT_ORIGIN))
    # A driver option in `options` replaces what a built-in default would generate for it
    # (options.connect_timeout, not the default connect_timeout of 5 s); set keys are merged.
    for key in [key for key in effective if key.startswith("options.")]:
        for generating in backend.generated_by.get(key.removeprefix("options."), ()):
            if generating in effective and effective[generating].origin == DEFAULT_ORIGIN:
                del effective[generating]
    problem = backend.validate({k: v.value for k, v in effective.items()})
    if problem is not None:
        key, why = problem
        raise DbConfigError(f'{effective[key].origin} (alias "{alias}"): {why}')
    if backend.needs_name and not effective.get("name"):
        raise DbConfigError(
            f'{chosen.origin} (alias "{alias}"): a {backend.display} alias needs a database name. '
            f"Set databases.{alias}.name, DBCONFIG_{alias.upper()}_NAME, or put it in the URL path."
        )
    _check_pool(alias, effective)
    _check_credentials(alias, effective)
    _check_pooler(alias, effective)
    return backend, effective


def render_alias(backend: Backend, effective: Mapping[str, Value], ctx: RenderContext) -> DatabaseSettings:
    """The alias's DATABASES entry; an option of `options` that clashes with its keys is a DbConfigError."""
    try:
        return backend.render({key: value.value for key, value in effective.items()}, ctx)
    except OptionConflict as exc:
        given = effective[f"options.{exc.option}"]
        keys = [
            f"{key} ({effective[key].origin})"
            for key in backend.generated_by.get(exc.option, ())
            if key in effective
        ]
        generated = f"; the keys generate it: {', '.join(keys)}" if keys else ""
        raise DbConfigError(
            f'{given.origin} (alias "{ctx.alias}"): options.{exc.option} {exc.detail}{generated}. '
            f"Remove options.{exc.option}, or the key that generates the same setting."
        ) from None


def _same_family(one: str, other: str) -> bool:
    return one == other or {one, other} == {"mysql", "mariadb"}


def _option_family(option: str) -> str:
    """ " (a MySQL option)" when another family's driver takes it, else ""."""
    owners = families_taking(option)
    return f" (it is an option of {' and '.join(owners)})" if owners else ""


def _check_engine(alias: str, engine: Value, chosen: Value) -> None:
    """A short engine name must be one this project has for the alias's backend."""
    if "." in engine.value:
        return  # a dotted path: another project's engine, or one of ours by its path
    names = engine_short_names()
    own = sorted(engine_short_names(chosen.value))
    if engine.value in own:
        return
    if engine.value in names:
        problem = (
            f'engine "{engine.value}" is an engine for the backend "{names[engine.value]}", but the '
            f'backend is "{chosen.value}" ({chosen.origin}).'
        )
    else:
        problem = f'"{engine.value}" is not an engine name django-dbconfig knows.' + did_you_mean(
            engine.value, names
        )
    fix = (
        f"For {chosen.value} use {one_of(own)}, or another engine's dotted module path."
        if own
        else f"{chosen.value} has no short engine names: give an engine's dotted module path, "
        "or remove engine."
    )
    raise DbConfigError(f'{engine.origin} (alias "{alias}"): {problem} {fix}')


def _alias_hint(alias: str, aliases: tuple[str, ...], values: Mapping[str, Value]) -> str:
    others = [a for a in aliases if a != alias]
    sources = ", ".join(sorted({str(v.origin) for v in values.values()}))
    return f" Its settings come from: {sources}." + did_you_mean(alias, others)


def _check_pool(alias: str, effective: dict[str, Value]) -> None:
    pool = effective.get("pool")
    if not pool or pool_mode(pool.value) != POOL_ALWAYS:
        # "asgi" keeps conn_max_age for the connections opened outside ASGI requests;
        # the engine uses no pool where Django has none (before 5.1).
        return

    if django.VERSION < (5, 1):
        raise DbConfigError(
            f'{pool.origin} (alias "{alias}"): pool needs Django 5.1 or later '
            f"(this is {django.get_version()}). Upgrade Django or use conn_max_age."
        )
    age = effective["conn_max_age"]
    if age.origin != DEFAULT_ORIGIN and not (age.from_defaults or age.inherited) and age.value != 0:
        raise DbConfigError(
            f'{age.origin} (alias "{alias}"): conn_max_age must be 0 or unset with pool '
            "(the pool keeps the connections). Remove conn_max_age for this alias."
        )
    effective["conn_max_age"] = Value(0, pool.origin, pool.rank)


def _with_primaries(databases: Mapping[str, Mapping[str, Value]]) -> dict[str, dict[str, Value]]:
    """Every alias's values, a replica's completed with its primary's (see inherit.py)."""
    resolved: dict[str, dict[str, Value]] = {}
    for alias, values in databases.items():
        primary = values.get("replica_of")
        if primary is None:
            resolved[alias] = dict(values)
            continue
        where = f'{primary.origin} (alias "{alias}")'
        if primary.value == alias:
            raise DbConfigError(f"{where}: an alias cannot be a replica of itself.")
        if primary.value not in databases:
            raise DbConfigError(
                f'{where}: replica_of names "{primary.value}", which is not an alias. '
                f"Known aliases: {one_of(databases)}." + did_you_mean(primary.value, databases)
            )
        if "replica_of" in databases[primary.value]:
            raise DbConfigError(
                f'{where}: "{primary.value}" is itself a replica. Point replica_of at the primary.'
            )
        own = inherit(
            databases[primary.value],
            values,
            parent_alias=primary.value,
            not_inherited=NOT_INHERITED_BY_REPLICAS,
        )
        resolved[alias] = with_replica_defaults(own)
    return resolved


def _check_credentials(alias: str, effective: Mapping[str, Value]) -> None:
    provider, password = effective.get("password_provider"), effective.get("password")
    if provider is None or password is None or not password.value:
        return
    raise DbConfigError(
        f'{provider.origin} (alias "{alias}"): password_provider and a password ({password.origin}) '
        "are both set. The provider gives the password for each new connection: remove the "
        "password (or the password in the URL), or remove password_provider."
    )


def _check_pooler(alias: str, effective: Mapping[str, Value]) -> None:
    pooler, cursors = effective.get("pooler"), effective.get("disable_server_side_cursors")
    if pooler is None or pooler.value != "transaction" or cursors is None or cursors.value:
        return
    raise DbConfigError(
        f'{cursors.origin} (alias "{alias}"): disable_server_side_cursors is false, but pooler '
        f'"transaction" ({pooler.origin}) cannot keep a named cursor across transactions. '
        "Remove disable_server_side_cursors (it is true behind a transaction pooler)."
    )


def _check_shared_roles(effective: Mapping[str, Mapping[str, Value]], vendors: Mapping[str, str]) -> None:

    session = {
        alias: session_settings({key: value.value for key, value in values.items()})
        for alias, values in effective.items()
        if vendors[alias] == "postgresql"
    }
    check_shared_roles({alias: effective[alias] for alias in session}, session)


def _replicas(
    effective: Mapping[str, Mapping[str, Value]], vendors: Mapping[str, str]
) -> dict[str, tuple[str, ...]]:
    replicas: dict[str, list[str]] = {}
    for alias, values in effective.items():
        if "replica_of" not in values:
            continue
        primary = values["replica_of"]
        where = f'{primary.origin} (alias "{alias}")'
        if not _same_family(vendors[alias], vendors[primary.value]):
            raise DbConfigError(
                f"{where}: a {vendors[alias]} alias cannot replicate the {vendors[primary.value]} "
                f'alias "{primary.value}". Where a profile moves "{primary.value}" to another backend, '
                f'move "{alias}" too, or leave its backend to replica_of (it inherits the primary\'s).'
            )
        replicas.setdefault(primary.value, []).append(alias)
    return {primary: tuple(names) for primary, names in replicas.items()}


def _routes(
    routes: Mapping[str, Value], aliases: tuple[str, ...], replicas: Mapping[str, tuple[str, ...]]
) -> dict[str, Value]:
    replica_names = {name for names in replicas.values() for name in names}
    errors = ErrorCollector()
    for route, target in routes.items():
        with errors.item():
            _check_route(route, target, aliases, replica_names)
    errors.raise_if_any()
    return dict(routes)


def _check_route(route: str, target: Value, aliases: tuple[str, ...], replica_names: set[str]) -> None:
    if target.value not in aliases:
        raise DbConfigError(
            f'{target.origin}: route "{route}" goes to "{target.value}", which is not an alias. '
            f"Known aliases: {one_of(aliases)}." + did_you_mean(target.value, aliases)
        )
    if target.value in replica_names:
        raise DbConfigError(
            f'{target.origin}: route "{route}" goes to the replica "{target.value}". Route to its '
            "primary: reads are sent to replicas automatically."
        )


def _explain_rows(
    effective: Mapping[str, Value], merged: Mapping[str, tuple[Any, str]] | None = None
) -> list[ExplainRow]:
    order = {key: index for index, key in enumerate(KEYS)}
    merged = merged or {}

    def sort_key(key: str) -> tuple[int, str]:
        return order.get(key.partition(".")[0], len(order)), key

    def row(key: str) -> ExplainRow:
        if key in merged:
            value, source = merged[key]
            return ExplainRow(key, display_value(key, value), source)
        return ExplainRow(key, display_value(key, effective[key].value), str(effective[key].origin))

    return [row(key) for key in sorted(effective, key=sort_key)]


def _merged_options(
    effective: Mapping[str, Value], options: Mapping[str, Any], backend: Backend
) -> dict[str, tuple[Any, str]]:
    """Options of `options` that were merged with generated ones: the value in effect, and its sources."""
    merged = {}
    for key, value in effective.items():
        option = key.removeprefix("options.")
        if key.startswith("options.") and option in options and options[option] != value.value:
            keys = [name for name in backend.generated_by.get(option, ()) if name in effective]
            merged[key] = (options[option], f"{value.origin}, merged with what {', '.join(keys)} generate")
    return merged


def display_value(key: str, value: Any) -> str:
    """A value as shown to people, with every secret masked."""
    shown = json_value(key, value)
    if key == "pool" and pool_mode(value) == POOL_ASGI:
        text = shown if isinstance(shown, str) else _json_text(shown)
        return f"{text} (pooled when opened for an ASGI request, persistent otherwise)"
    if isinstance(shown, str):
        return shown
    if isinstance(value, tuple):
        return ", ".join(str(item) for item in value)
    return _json_text(shown)


def _json_text(shown: Any) -> str:
    import json  # only when explaining: not on the path of every settings.py

    return json.dumps(shown, default=str)


def json_value(key: str, value: Any) -> Any:
    """A value as `dbconfig --format json` gives it: typed (numbers, booleans, lists, objects),
    durations as text with their unit ("30s"), every secret masked, nested ones included."""
    root, _, option = key.partition(".")
    if root == "migrate" and option:
        # Each migrate entry is an alias key of its own: shown (and masked) as that key.
        return json_value(option, value)
    if (root in KEYS and KEYS[root].secret) or (option and is_secret_option(option)):
        return mask_url(str(value)) if root == "url" else MASK
    if key in DURATION_KEYS and value is not None:
        return format_duration(int(value))
    return _masked(value)


def _masked(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            str(name): MASK if is_secret_option(str(name)) else _masked(item) for name, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_masked(item) for item in value]
    return value


def mask_url(url: str) -> str:
    """Replace the password of a URL, keeping the rest readable."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return MASK
    netloc, slash, tail = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":" + MASK
    # Query options may carry a password too (e.g. ?password=...).
    if "?" in tail:
        path, _, query = tail.partition("?")
        parts = [
            p if not is_secret_option(p.partition("=")[0]) else p.partition("=")[0] + "=" + MASK
            for p in query.split("&")
        ]
        tail = path + "?" + "&".join(parts)
    return f"{scheme}://{userinfo}{at}{host}{slash}{tail}"
