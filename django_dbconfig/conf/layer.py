"""A layer: what one source says, each value tagged with where it came from."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django_dbconfig.core.errors import DbConfigError, ErrorCollector, did_you_mean, one_of
from django_dbconfig.core.keys import KEYS, MAX_DEPTH, OBJECT_KEYS, PlainValueError

ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
ROUTE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
TOP_LEVEL = ("defaults", "databases", "routes", "environments")
NOT_IN_DEFAULTS = ("url", "replica_of", "backend", "engine", "name")


@dataclass(frozen=True)
class Origin:
    """Where a value came from: a source label and, for files, the key path.

    `via` names the environment variables a file's `${NAME}` reference read the value from.
    """

    source: str
    key: str = ""
    via: str = ""

    def __str__(self) -> str:
        where = f"{self.source}: {self.key}" if self.key else self.source
        return f"{self.via} (referenced in {where})" if self.via else where


@dataclass(frozen=True)
class Value:
    """A coerced value, where it came from, and the rank of its layer (0 = lowest)."""

    value: Any
    origin: Origin
    rank: int = 0
    from_defaults: bool = False
    # Taken from another alias (a replica's primary): weak where the backend has no use for it.
    inherited: bool = False
    # For a driver option: the backend chosen where it was set (None when not known there).
    set_for: str | None = None


@dataclass
class Layer:
    """What one source contributes, in the shape of dbconfig.json.

    `options` and `test` objects are flattened into "options.<name>" keys so
    that they merge per option, each with its own origin.
    `weak_aliases` are aliases this layer mentions without declaring them
    (an `<ALIAS>_DATABASE_URL` variable for an alias no file names).
    """

    label: str
    defaults: dict[str, Value] = field(default_factory=dict)
    databases: dict[str, dict[str, Value]] = field(default_factory=dict)
    routes: dict[str, Value] = field(default_factory=dict)
    weak_aliases: set[str] = field(default_factory=set)


def check_alias(alias: str, origin: Origin) -> str:
    if not isinstance(alias, str) or not ALIAS_PATTERN.match(alias):
        raise DbConfigError(
            f'{origin}: alias "{alias}" is not a valid alias name. Use lowercase letters, '
            'digits and underscores, starting with a letter (e.g. "analytics", "read_replica"), '
            "so that it maps to environment variables."
        )
    return alias


def coerce(key: str, raw: object, origin: Origin, *, text: bool, alias: str | None) -> Any:
    """Coerce one raw value, raising DbConfigError naming origin and alias."""
    spec = KEYS[key]
    try:
        return spec.coerce(raw, from_env=text)
    except ValueError as exc:
        where = f' (alias "{alias}")' if alias else ""
        # A secret's value never goes into the message; PlainValueError's message holds no value.
        plain = isinstance(exc, PlainValueError)
        problem = (
            f"{exc} (the value is not shown: {key} is secret)"
            if spec.secret and plain
            else f"expected a string (the value is not shown: {key} is secret)"
            if spec.secret
            else str(exc)
        )
        end = "" if problem.endswith((".", "?")) else "."
        raise DbConfigError(f"{origin}{where}: {key}: {problem}{end}") from None


def _expand_dotted(obj: Mapping[str, Any], origin: Origin, *, verbatim: bool = False) -> dict[str, Any]:
    """Turn {"a.b": 1} into {"a": {"b": 1}}, merging objects that meet."""
    result: dict[str, Any] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise DbConfigError(f"{origin}: keys must be strings.")
        parts = [key] if verbatim else key.split(".")
        target = result
        for part in parts[:-1]:
            existing = target.get(part)
            if not isinstance(existing, dict):
                existing = target[part] = {}
            target = existing
        last = parts[-1]
        if isinstance(value, Mapping) and isinstance(target.get(last), dict):
            target[last] = {**target[last], **value}
        else:
            target[last] = value
    return result


def _need_object(value: object, origin: Origin, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        kind = type(value).__name__ if value is not None else "null"
        raise DbConfigError(f"{origin}: expected an object ({what}), got {kind}.")
    return value


def parse_document(
    document: object,
    *,
    label: str,
    rank: int,
    allow_environments: bool,
    key_prefix: str = "",
    environ: Mapping[str, str] | None = None,
) -> tuple[Layer, dict[str, Any]]:
    """Read a dbconfig.json-shaped mapping into a Layer.

    Returns the layer and the raw `environments` object (empty when absent).
    `key_prefix` ("environments.production.") is where the document sits in
    its file, so that every origin shows the full key path. Every wrong value
    is reported, in one DbConfigError.
    """
    doc_origin = Origin(label, key_prefix.rstrip("."))
    document = _need_object(document, doc_origin, "the whole document")
    check_nesting(document, doc_origin)
    layer = Layer(label)
    environments: dict[str, Any] = {}
    errors = ErrorCollector()

    def at(path: str) -> Origin:
        return Origin(label, key_prefix + path)

    for top, value in _split_top(document, doc_origin).items():
        origin = at(top)
        if top == "defaults":
            with errors.item():
                settings = _need_object(value, origin, "key: value settings for every alias")
                layer.defaults = alias_values(settings, at, "defaults", rank, alias=None, environ=environ)
            for key in layer.defaults:
                if key in NOT_IN_DEFAULTS:
                    errors.messages.append(
                        f"{at('defaults.' + key)}: {key} cannot be a default for every "
                        f"alias. Move it under databases.<alias>.{key}."
                    )
        elif top == "databases":
            with errors.item():
                aliases = _need_object(value, origin, "alias: settings")
                for alias, raw in aliases.items():
                    with errors.item():
                        check_alias(alias, at(f"databases.{alias}"))
                        settings = _need_object(raw, at(f"databases.{alias}"), "key: value settings")
                        layer.databases[alias] = alias_values(
                            settings, at, f"databases.{alias}", rank, alias=alias, environ=environ
                        )
        elif top == "routes":
            with errors.item():
                routes = _need_object(value, origin, "app_label or app_label.Model: alias")
                for route, target in routes.items():
                    with errors.item():
                        layer.routes[route] = _route(route, target, at(f"routes.{route}"), rank)
        elif top == "environments":
            with errors.item():
                if not allow_environments:
                    raise DbConfigError(
                        f"{origin}: environments are not allowed here. Put profiles in dbconfig.json."
                    )
                environments = dict(_need_object(value, origin, "profile name: settings"))
    errors.raise_if_any()
    return layer, environments


def check_nesting(document: Mapping[str, Any], origin: Origin) -> None:
    """Refuse objects and lists nested deeper than MAX_DEPTH (cycles included)."""
    pending: list[tuple[object, int]] = [(document, 0)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise DbConfigError(
                f"{origin}: objects and lists are nested more than {MAX_DEPTH} levels deep. "
                "Flatten the configuration: no setting needs that depth."
            )
        if isinstance(value, Mapping):
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, (list, tuple)):
            pending.extend((item, depth + 1) for item in value)


def _split_top(document: Mapping[str, Any], origin: Origin) -> dict[str, Any]:
    """Group top-level keys, accepting dotted forms like "databases.default.host"."""
    grouped: dict[str, Any] = {}
    for key, value in document.items():
        if not isinstance(key, str):
            raise DbConfigError(f"{origin}: keys must be strings.")
        head, _, rest = key.partition(".")
        if head not in TOP_LEVEL:
            raise DbConfigError(
                f'{origin}: unknown top-level key "{key}". Expected {one_of(TOP_LEVEL)}.'
                + did_you_mean(head, TOP_LEVEL)
            )
        if not rest:
            if head in grouped and isinstance(grouped[head], dict) and isinstance(value, Mapping):
                grouped[head] = _merge_objects(grouped[head], value)
            else:
                grouped[head] = dict(value) if isinstance(value, Mapping) else value
            continue
        if head == "routes":
            nested: dict[str, Any] = {rest: value}  # route keys hold dots themselves
        elif head == "databases":
            alias, _, key_path = rest.partition(".")
            nested = {alias: {key_path: value}} if key_path else {alias: value}
        else:
            nested = {rest: value}
        existing = grouped.get(head)
        grouped[head] = _merge_objects(existing if isinstance(existing, dict) else {}, nested)
    return grouped


def _merge_objects(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge_objects(merged[key], value)
        else:
            merged[key] = value
    return merged


def alias_values(
    settings: Mapping[str, Any],
    at: Callable[[str], Origin],
    path: str,
    rank: int,
    *,
    alias: str | None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Value]:
    """The keys of one alias (or of `defaults`), coerced and tagged with their origin.

    With `environ` (a file's layers), a string may refer to the project's own variables:
    `${DB_HOST}`, `${DB_PORT:-5432}`; the value then reads as a variable's would.
    """
    values: dict[str, Value] = {}
    errors = ErrorCollector()
    for key, raw in _expand_dotted(settings, at(path)).items():
        with errors.item():
            origin = at(f"{path}.{key}" if path else key)
            if key not in KEYS:
                raise DbConfigError(
                    f'{origin}: unknown key "{key}". Valid keys: {", ".join(KEYS)}.' + did_you_mean(key, KEYS)
                )
            given, names = substitute(raw, environ, origin) if environ is not None else (raw, [])
            if names:
                origin = Origin(origin.source, origin.key, via=", ".join(names))
            # A value read from variables is text, as a DBCONFIG_* variable's is.
            coerced = coerce(key, given, origin, text=bool(names) and isinstance(given, str), alias=alias)
            values.update(make_values(key, coerced, origin, rank))
    errors.raise_if_any()
    return values


# ${NAME} or ${NAME:-default}; $${ is a literal ${.
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute(raw: Any, environ: Mapping[str, str], origin: Origin) -> tuple[Any, list[str]]:
    """`raw` with each `${NAME}` replaced by the variable's value, and the names it read.

    Strings inside lists and objects too. A variable that is not set and has no
    `:-default` is an error naming it; its value is never shown.
    """
    names: list[str] = []

    def one(text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            if name in environ:
                names.append(name)
                return environ[name]
            if default is not None:
                names.append(f"the default of ${{{name}}}")
                return default
            raise DbConfigError(
                f"{origin}: refers to ${{{name}}}, but the variable {name} is not set. "
                f"Set {name}, or give a default: ${{{name}:-value}}."
            )

        return _REFERENCE.sub(replace, text) if "$" in text else text

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return one(value)
        if isinstance(value, list):
            return [walk(item) for item in value]
        if isinstance(value, Mapping):
            return {name: walk(item) for name, item in value.items()}
        return value

    result = walk(raw)
    return result, list(dict.fromkeys(names))


def make_values(key: str, value: Any, origin: Origin, rank: int) -> dict[str, Value]:
    """Wrap a coerced value; objects (`options`, `test`) become one Value per entry."""
    if key in OBJECT_KEYS:
        return {
            f"{key}.{name}": Value(
                item, Origin(origin.source, f"{origin.key}.{name}" if origin.key else name), rank
            )
            for name, item in value.items()
        }
    return {key: Value(value, origin, rank)}


def _route(route: str, target: object, origin: Origin, rank: int) -> Value:
    if not ROUTE_PATTERN.match(route):
        raise DbConfigError(
            f'{origin}: "{route}" is not a route key. Use an app label ("reports") '
            'or app_label.ModelName ("events.PageView").'
        )
    if not isinstance(target, str):
        raise DbConfigError(f"{origin}: expected an alias name as a string.")
    return Value(check_alias(target, origin), origin, rank)
