"""The six sources of settings, lowest first. Each reads one layer.

Every source is a small object: `load(rank)` returns a Layer whose values
carry their origin. Reading is all they do; merging is `merge.merge`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from django_dbconfig.conf.layer import Layer, Origin, Value, check_alias, coerce, make_values, parse_document
from django_dbconfig.core.errors import DbConfigError, ErrorCollector, did_you_mean
from django_dbconfig.core.keys import KEYS, MAX_DEPTH, PlainValueError, unique_keys

META_VARIABLES = ("DBCONFIG_ENV", "DBCONFIG_FILE", "DBCONFIG_SECRETS_DIR")
_PREFIX = "DBCONFIG_"
_URL_SUFFIX = "_DATABASE_URL"
_FILE_SUFFIX = "_FILE"
_MIGRATE = "migrate_"


def display_path(path: Path, base_dir: Path) -> str:
    """A path as users recognise it: relative to base_dir when inside it."""
    try:
        return str(path.relative_to(base_dir))
    except ValueError:
        return str(path)


class DefaultsSource:
    """The built-in layer: one `default` alias on SQLite at <base_dir>/db.sqlite3.

    Per-backend defaults (ports, conn_max_age, connect_timeout) are applied
    by the backend modules, which know which keys they use.
    """

    label = "default"

    def load(self, rank: int) -> Layer:
        origin = Origin(self.label)
        return Layer(
            self.label,
            databases={
                "default": {
                    "backend": Value("sqlite", origin, rank),
                    "name": Value("db.sqlite3", origin, rank),
                }
            },
        )

    def __repr__(self) -> str:
        return "DefaultsSource()"


class JsonFile:
    """One JSON file, read once; shared by the file layer and the profile layer."""

    def __init__(
        self, path: Path, *, label: str, required: bool, environ: Mapping[str, str] | None = None
    ) -> None:
        self.path = path
        self.label = label
        self.required = required
        # What `${NAME}` references in the file read (load_config's environ).
        self.environ: Mapping[str, str] = environ if environ is not None else {}
        self._document: Mapping[str, Any] | None = None
        self._parsed: dict[int, tuple[Layer, dict[str, Any]]] = {}

    def document(self) -> Mapping[str, Any]:
        if self._document is None:
            self._document = self._read()
        return self._document

    def _read(self) -> Mapping[str, Any]:
        try:
            text = read_bounded(self.path)
        except FileNotFoundError:
            if self.required:
                raise DbConfigError(
                    f"{self.label}: the configuration file does not exist. "
                    "Create it, or fix DBCONFIG_FILE / config_file=."
                ) from None
            return {}
        except (OSError, ValueError) as exc:
            raise DbConfigError(f"{self.label}: {unreadable(exc)}") from None
        import json  # only when there is a file to read

        try:
            document = json.loads(text, object_pairs_hook=unique_keys)
        except json.JSONDecodeError as exc:
            # exc.msg and the position carry no file content, so no secret.
            raise DbConfigError(
                f"{self.label}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                f"column {exc.colno}). Fix the syntax."
            ) from None
        except PlainValueError as exc:
            raise DbConfigError(f"{self.label}: {exc}.") from None
        except RecursionError:
            raise DbConfigError(
                f"{self.label}: objects and lists are nested more than {MAX_DEPTH} levels deep. "
                "Flatten the configuration: no setting needs that depth."
            ) from None
        except ValueError:
            # Python refuses integers of thousands of digits; the text may hold a secret.
            raise DbConfigError(
                f"{self.label}: a number in the file has too many digits. Fix the number."
            ) from None
        if not isinstance(document, dict):
            raise DbConfigError(f"{self.label}: the file must hold a JSON object at the top.")
        return document

    def __repr__(self) -> str:
        return f"JsonFile({str(self.path)!r}, required={self.required})"

    def parsed(self, rank: int) -> tuple[Layer, dict[str, Any]]:
        """The file as a layer at `rank`, and its raw `environments`; parsed once per rank."""
        if rank not in self._parsed:
            self._parsed[rank] = parse_document(
                self.document(), label=self.label, rank=rank, allow_environments=True, environ=self.environ
            )
        return self._parsed[rank]

    def environments(self) -> dict[str, Any]:
        """The raw `environments` object, from any parse already made."""
        return next(iter(self._parsed.values()))[1] if self._parsed else self.parsed(0)[1]


class JsonFileSource:
    """dbconfig.json without its `environments`."""

    def __init__(self, file: JsonFile) -> None:
        self.file = file
        self.label = file.label

    def load(self, rank: int) -> Layer:
        return self.file.parsed(rank)[0]

    def profiles(self) -> tuple[str, ...]:
        return tuple(self.file.environments())

    def __repr__(self) -> str:
        return f"JsonFileSource({self.file!r})"


class ProfileSource:
    """`environments.<name>` of dbconfig.json."""

    def __init__(self, file: JsonFile, name: str) -> None:
        self.file = file
        self.name = name
        self.label = file.label

    def load(self, rank: int) -> Layer:
        environments = self.file.environments()
        if self.name not in environments:
            return Layer(self.label)
        return _profile_layer(environments[self.name], self.file, self.name, rank)

    def __repr__(self) -> str:
        return f"ProfileSource({self.file!r}, {self.name!r})"


def _profile_layer(document: object, file: JsonFile, name: str, rank: int) -> Layer:
    prefix = f"environments.{name}"
    if not isinstance(document, Mapping):
        raise DbConfigError(f"{file.label}: {prefix}: expected an object shaped like dbconfig.json.")
    layer, _ = parse_document(
        document,
        label=file.label,
        rank=rank,
        allow_environments=False,
        key_prefix=f"{prefix}.",
        environ=file.environ,
    )
    return layer


# The largest file read as configuration or as a `_FILE` value: far beyond any real one.
MAX_FILE_BYTES = 1 << 20


def read_bounded(path: Path) -> str:
    """A UTF-8 text file of at most MAX_FILE_BYTES; OSError or ValueError otherwise."""
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise _TooLarge
    return data.decode("utf-8")


class _TooLarge(ValueError):
    pass


def unreadable(exc: BaseException, what: str = "the file") -> str:
    """Why a file could not be read, and what to do: the message never quotes its content."""
    if isinstance(exc, IsADirectoryError):
        return f"{what} is a directory. Point it at a file."
    if isinstance(exc, PermissionError):
        return f"{what} cannot be read: permission denied. Check its permissions (and its directory's)."
    if isinstance(exc, _TooLarge):
        return f"{what} is larger than {MAX_FILE_BYTES // 1024} KiB. Point it at the right file."
    if isinstance(exc, UnicodeDecodeError):
        return f"{what} is not UTF-8 text. Save it as UTF-8."
    if isinstance(exc, ValueError):
        return "the path contains a NUL character. Fix the path."
    return f"{what} cannot be read ({type(exc).__name__}). Check that the path is a readable file."


class SecretsFileSource:
    """<secrets_dir>/dbconfig.json: same shape as dbconfig.json, kept out of git.

    Its own `environments.<name>`, if any, overlays it within this layer.
    """

    def __init__(self, file: JsonFile, environment: str | None) -> None:
        self.file = file
        self.environment = environment
        self.label = file.label

    def load(self, rank: int) -> Layer:
        base, environments = self.file.parsed(rank)
        if not (self.environment and self.environment in environments):
            return base
        profile = _profile_layer(environments[self.environment], self.file, self.environment, rank)
        aliases = {*base.databases, *profile.databases}
        return Layer(
            self.label,
            defaults={**base.defaults, **profile.defaults},
            databases={a: {**base.databases.get(a, {}), **profile.databases.get(a, {})} for a in aliases},
            routes={**base.routes, **profile.routes},
        )

    def profiles(self) -> tuple[str, ...]:
        return tuple(self.file.environments())

    def __repr__(self) -> str:
        return f"SecretsFileSource({self.file!r}, environment={self.environment!r})"


class EnvironSource:
    """DATABASE_URL, <ALIAS>_DATABASE_URL, DBCONFIG_<ALIAS>_<KEY> and their _FILE twins."""

    label = "environment"

    def __init__(
        self, environ: Mapping[str, str], *, base_dir: Path, known_aliases: Sequence[str] = ()
    ) -> None:
        self.environ = environ
        self.base_dir = base_dir
        self.known_aliases = tuple(known_aliases)

    def load(self, rank: int) -> Layer:
        layer = Layer(self.label)
        declared: set[str] = set()
        errors = ErrorCollector()
        for variable, given in self._variables(errors):
            with errors.item():
                target = self._target(variable)
                if target is None:
                    continue
                alias, key, weak = target
                text = self._read_file(variable, given) if variable.endswith(_FILE_SUFFIX) else given
                origin = Origin(variable)
                values = layer.databases.setdefault(alias, {})
                if key == "url" and "url" in values:
                    raise DbConfigError(
                        f"{values['url'].origin} and {variable} both set the URL of alias "
                        f'"{alias}". Keep one of them.'
                    )
                (layer.weak_aliases if weak else declared).add(alias)
                if key.startswith("migrate."):
                    entry = key.removeprefix("migrate.")
                    coerced = coerce("migrate", {entry: text}, origin, text=True, alias=alias)
                    values[key] = Value(coerced[entry], origin, rank)
                    continue
                coerced = coerce(key, text, origin, text=True, alias=alias)
                values.update(make_values(key, coerced, origin, rank))
        errors.raise_if_any()
        # An alias that a DBCONFIG_ variable names is declared even if its URL came unprefixed.
        layer.weak_aliases -= declared
        return layer

    def _variables(self, errors: ErrorCollector) -> list[tuple[str, str]]:
        """Each relevant variable with its text (for a `_FILE` twin, the path)."""
        found: dict[str, tuple[str, str]] = {}
        for name in sorted(_names(self.environ)):
            if not (
                name.startswith(_PREFIX)
                or name.endswith((_URL_SUFFIX, _URL_SUFFIX + _FILE_SUFFIX))
                or name in ("DATABASE_URL", "DATABASE_URL_FILE")
            ):
                continue
            if name in META_VARIABLES:
                continue
            text = self.environ[name]
            if not isinstance(text, str):
                errors.messages.append(f"{name}: the value is a {type(text).__name__}, not a string.")
                continue
            if not text:
                continue  # an empty variable counts as unset
            base = name.removesuffix(_FILE_SUFFIX)
            if base in found:
                errors.messages.append(
                    f"{found[base][0]} and {name} are both set. Set the value or the file, not both."
                )
                continue
            found[base] = (name, text)
        return [found[base] for base in sorted(found)]

    def _read_file(self, variable: str, path_text: str) -> str:
        path = Path(path_text)
        if not path.is_absolute():
            path = self.base_dir / path
        try:
            text = read_bounded(path)
        except FileNotFoundError:
            raise DbConfigError(
                f"{variable}: the file {path} does not exist. Point {variable} at the file "
                "holding the value (e.g. a mounted Docker or Kubernetes secret)."
            ) from None
        except (OSError, ValueError) as exc:
            shown_path = str(path).replace("\x00", "\\x00")
            raise DbConfigError(f"{variable}: {unreadable(exc, f'the file {shown_path}')}") from None
        return text.removesuffix("\n").removesuffix("\r")

    def _target(self, variable: str) -> tuple[str, str, bool] | None:
        """(alias, key, weak) for a variable, or None if it is not ours."""
        name = variable.removesuffix(_FILE_SUFFIX) if variable.endswith(_FILE_SUFFIX) else variable
        if name == "DATABASE_URL":
            return "default", "url", False
        if name.startswith(_PREFIX):
            return self._prefixed_target(variable, name[len(_PREFIX) :].lower())
        if name.endswith(_URL_SUFFIX):
            # Other software shares the environment: these only apply to
            # aliases declared elsewhere (the merge drops the rest).
            alias = name.removesuffix(_URL_SUFFIX).lower()
            return (alias, "url", True) if _plausible_alias(alias) else None
        return None

    def _prefixed_target(self, variable: str, rest: str) -> tuple[str, str, bool]:
        candidates = []
        for index, char in enumerate(rest):
            if char != "_":
                continue
            alias, key = rest[:index], rest[index + 1 :]
            if alias and key in KEYS:
                candidates.append((alias in self.known_aliases, len(key), alias, key))
            elif alias and key.startswith(_MIGRATE) and key.removeprefix(_MIGRATE) in KEYS:
                # DBCONFIG_<ALIAS>_MIGRATE_PASSWORD: one entry of the alias's migrate object.
                candidates.append((alias in self.known_aliases, len(key), alias, key.replace("_", ".", 1)))
        if not candidates:
            known = [
                f"{_PREFIX}{a.upper()}_{k.upper()}" for a in self.known_aliases or ("default",) for k in KEYS
            ]
            twin = _FILE_SUFFIX if variable.endswith(_FILE_SUFFIX) else ""
            suggestion = did_you_mean(variable.removesuffix(twin), [*known, *META_VARIABLES])
            if twin and suggestion:
                suggestion = suggestion.replace('"?', f'{twin}"?')
            raise DbConfigError(
                f"{variable}: not a django-dbconfig variable. Use {_PREFIX}<ALIAS>_<KEY> with a key "
                f"from: {', '.join(KEYS)}; or one of {', '.join(META_VARIABLES)}." + suggestion
            )
        _, _, alias, key = max(candidates)
        check_alias(alias, Origin(variable))
        return alias, key, False

    def __repr__(self) -> str:
        names = sorted(
            n
            for n in _names(self.environ)
            if n.startswith(_PREFIX) or n.endswith(_URL_SUFFIX) or n.startswith("DATABASE_URL")
        )
        return f"EnvironSource(variables={names!r})"


def _names(environ: Mapping[Any, Any]) -> list[str]:
    """The variable names of an environ mapping; a name that is not a string is an error."""
    odd = [name for name in environ if not isinstance(name, str)]
    if odd:
        raise DbConfigError(
            f"environ=: every variable name must be a string, got a {type(odd[0]).__name__}. "
            "Pass a mapping of str to str, like os.environ."
        )
    return list(environ)


def _plausible_alias(alias: str) -> bool:
    return bool(alias) and alias.replace("_", "").isalnum() and alias[0].isalpha()


class OverrideSource:
    """`overrides=` and active `override()` blocks: the highest layer."""

    label = "override"

    def __init__(self, mappings: Sequence[Mapping[str, Any]]) -> None:
        self.mappings = tuple(mappings)

    def load(self, rank: int) -> Layer:
        layer = Layer(self.label)
        for mapping in self.mappings:  # later mappings win
            part, _ = parse_document(mapping, label=self.label, rank=rank, allow_environments=False)
            layer.defaults.update(part.defaults)
            for alias, values in part.databases.items():
                layer.databases.setdefault(alias, {}).update(values)
            layer.routes.update(part.routes)
        return layer

    def __repr__(self) -> str:
        return f"OverrideSource(count={len(self.mappings)})"
