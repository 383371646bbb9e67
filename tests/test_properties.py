"""Property-based: random documents and environments for every layer, each with a planted
password. Only DbConfigError escapes, and the password never shows: not in the error (its
message, arguments or chain), a log record or a warning when loading fails; not in repr(),
explain(), unused() or `manage.py dbconfig` text and JSON when it succeeds.

Runs are deterministic (derandomize) so that CI is stable. For a long local search, set
DBCONFIG_PROPERTY_EXAMPLES=5000 DBCONFIG_PROPERTY_RANDOM=1.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_dbconfig import DbConfigError, load_config
from django_dbconfig.core.keys import KEYS, SSLMODES
from django_dbconfig.management.commands.dbconfig import Command, as_json

EXAMPLES = int(os.environ.get("DBCONFIG_PROPERTY_EXAMPLES", "250"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("DBCONFIG_PROPERTY_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ALIASES = ["default", "analytics", "replica", "eu_app", "Bad-Alias", ""]
KEY_NAMES = [*KEYS, "hostname", "pasword", "options.ssl.passphrase", "databases.default.host"]
# Distinctive enough never to occur by chance; alphanumeric so every form of it is the same.
SECRETS = st.from_regex(r"\AZq[A-Za-z0-9]{12}\Z")

# Any JSON-ish value, odd ones included: huge and negative numbers, NUL and surrogate-free
# control characters, deep-ish nesting.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.sampled_from([0, 65536, 10**20, 10**400, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", " ", "\x00", "a\x00b", "30s", "5min", "500ms", "1e400s", "postgres://", "a/b@c"]),
)
ANY = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)

VALID = {
    "backend": st.sampled_from(["postgresql", "mysql", "mariadb", "sqlite", "postgres"]),
    "host": st.sampled_from(["localhost", "db.internal", "127.0.0.1", "/var/run/postgresql"]),
    "port": st.integers(min_value=1, max_value=65535),
    "name": st.sampled_from(["app", "db.sqlite3", ":memory:"]),
    "user": st.sampled_from(["app", "reporter", ""]),
    "conn_max_age": st.one_of(st.none(), st.integers(min_value=0, max_value=600)),
    "sslmode": st.sampled_from(SSLMODES),
    "search_path": st.lists(st.sampled_from(["app", "public", "My Schema"]), min_size=1, max_size=2),
    "statement_timeout": st.sampled_from(["30s", 5, "500ms", "1h"]),
    "lock_timeout": st.sampled_from(["5s", 1]),
    "read_only": st.booleans(),
    "replica_of": st.sampled_from(["default", "analytics"]),
    "options": st.dictionaries(st.sampled_from(["keepalives", "ssl", "init"]), SCALARS, max_size=2),
}


def key_value(key: str, *, odd: bool) -> st.SearchStrategy[Any]:
    valid = VALID.get(key)
    if not odd:
        return valid if valid is not None else st.sampled_from(["x", True, 1])
    return st.one_of(valid, ANY) if valid is not None else ANY


@st.composite
def alias_settings(draw: st.DrawFn, *, odd: bool) -> dict[str, Any]:
    names = KEY_NAMES if odd else [*VALID, "password"]
    keys = draw(st.lists(st.sampled_from(names), max_size=4, unique=True))
    return {key: draw(key_value(key.rpartition(".")[2], odd=odd)) for key in keys}


@st.composite
def documents(draw: st.DrawFn, *, odd: bool) -> dict[str, Any]:
    """A dbconfig.json-shaped object: plausible, or (odd) with odd values at any level."""
    doc: dict[str, Any] = {}
    aliases = ALIASES if odd else ALIASES[:4]
    if draw(st.booleans()):
        doc["databases"] = {
            alias: draw(alias_settings(odd=odd))
            for alias in draw(st.lists(st.sampled_from(aliases), max_size=3, unique=True))
        }
    if draw(st.integers(0, 2)) == 0:
        defaults = draw(alias_settings(odd=odd))
        doc["defaults"] = {
            k: v for k, v in defaults.items() if odd or k in ("conn_max_age", "statement_timeout")
        }
    if draw(st.integers(0, 3)) == 0:
        targets = ANY if odd else st.sampled_from(["default", "analytics"])
        labels = st.sampled_from(["reports", "a.B", "x y"] if odd else ["reports", "a.B"])
        doc["routes"] = draw(st.dictionaries(labels, targets, max_size=2))
    if draw(st.integers(0, 3)) == 0:
        doc["environments"] = {"dev": draw(documents(odd=odd))}
    if odd and draw(st.integers(0, 5)) == 0:
        doc[draw(st.text(max_size=10))] = draw(ANY)
    return doc


@st.composite
def urls(draw: st.DrawFn, secret: str, *, odd: bool) -> str:
    """A URL with the secret as its password; odd ones are malformed in the ways people get wrong."""

    def pick(plain: list[str], strange: list[str]) -> str:
        return draw(st.sampled_from(plain + strange if odd else plain))

    scheme = pick(["postgresql", "postgres", "mysql", "mariadb", "postgresql+psycopg"], ["pg", "mysql+x"])
    user = pick(["app", "a:b", "a@b", ""], ["a/b", "a?b", "a#b"])
    host = pick(["h", "h:5432", "h,i"], ["h:99999", "[::1", "h/x", ""])
    tail = pick(
        ["/app", "/app?sslmode=require", "/app?password=" + secret], ["", "/app?statement_timeout=x", "/a@b"]
    )
    sep = pick(["://"], [":/", ":"])
    return f"{scheme}{sep}{user}:{quote(secret, safe='')}@{host}{tail}"


ENV_NAMES = st.one_of(
    st.sampled_from(
        [
            "DATABASE_URL",
            "ANALYTICS_DATABASE_URL",
            "DBCONFIG_ENV",
            "DBCONFIG_DEFAULT_HOST",
            "DBCONFIG_DEFAULT_PORT",
            "DBCONFIG_DEFAULT_OPTIONS",
            "DBCONFIG_ANALYTICS_BACKEND",
            "DBCONFIG_EU_APP_NAME",
            "DBCONFIG_DEFAULT_HOTS",
            "DBCONFIG_DEFAULT_SEARCH_PATH",
            "DBCONFIG_DEFAULT_STATEMENT_TIMEOUT",
            "DBCONFIG_REPLICA_REPLICA_OF",
            "DBCONFIG_DEFAULT_HOST_FILE",
        ]
    ),
    st.builds(
        lambda a, k: f"DBCONFIG_{a.upper()}_{k.upper()}", st.sampled_from(ALIASES), st.sampled_from(KEY_NAMES)
    ),
    st.text(max_size=12),
)
ENV_VALUES = st.one_of(
    st.sampled_from(
        ["", "1", "true", "maybe", "30s", "app,public", '{"a": 1}', "{", "sqlite:///x.db", "dev"]
    ),
    st.text(max_size=16),
)


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    """Every layer at once, and where the password is planted."""
    secret = draw(SECRETS)
    odd = draw(st.booleans())
    environ = st.dictionaries(ENV_NAMES, ENV_VALUES, max_size=4) if odd else st.just({})
    world: dict[str, Any] = {
        "secret": secret,
        "config": draw(documents(odd=odd)),
        "secrets": draw(st.one_of(st.none(), documents(odd=odd))),
        "environ": draw(environ),
        "overrides": draw(st.one_of(st.none(), documents(odd=odd))),
        "environment": draw(st.sampled_from([None, None, "dev", "prod"] if odd else [None, "dev"])),
        "password_file": None,
    }
    if not odd:
        # Plausible worlds name a server for every alias they mention, so that most load.
        if world["environment"] == "dev":
            world["config"].setdefault("environments", {"dev": {}})
        databases = world["config"].setdefault("databases", {})
        for alias in ("default", "analytics", "eu_app", *databases):
            databases[alias] = {"backend": "postgresql", "name": "app", **databases.get(alias, {})}
    alias = draw(st.sampled_from(["default", "analytics", "eu_app"]))
    where = draw(
        st.sampled_from(
            ["config", "secrets", "overrides", "env", "env_file", "url_env", "url_file", "option"]
        )
    )
    if where in ("config", "secrets", "overrides"):
        doc = world[where] if isinstance(world[where], dict) else {}
        databases = doc.setdefault("databases", {}) if isinstance(doc.get("databases", {}), dict) else {}
        if isinstance(databases.get(alias, {}), dict):
            databases.setdefault(alias, {})["password"] = secret
        world[where] = doc
    elif where == "env":
        world["environ"][f"DBCONFIG_{alias.upper()}_PASSWORD"] = secret
    elif where == "env_file":
        world["password_file"] = f"DBCONFIG_{alias.upper()}_PASSWORD_FILE"
    elif where == "url_env":
        world["environ"][f"DBCONFIG_{alias.upper()}_URL"] = draw(urls(secret, odd=odd))
    elif where == "url_file":
        world["config"].setdefault("databases", {})
        if isinstance(world["config"]["databases"], dict):
            world["config"]["databases"].setdefault(alias, {})
            if isinstance(world["config"]["databases"][alias], dict):
                world["config"]["databases"][alias]["url"] = draw(urls(secret, odd=odd))
    else:
        name = draw(st.sampled_from(["passphrase", "password", "ssl"]))
        value: Any = {"passphrase": secret} if name == "ssl" else secret
        world["overrides"] = {
            "databases": {alias: {"backend": "postgresql", "name": "a", "options": {name: value}}}
        }
    return world


@contextmanager
def recorded() -> Iterator[list[str]]:
    """Every log record's text and every warning while loading."""
    texts: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            texts.append(record.getMessage())

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield texts
        texts.extend(str(w.message) for w in caught)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def write(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, default=str))


def chain_texts(error: BaseException) -> list[str]:
    texts, seen = [], []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        texts += [str(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return texts


def everything_shown(config: Any) -> str:
    out = io.StringIO()
    command = Command(stdout=out, no_color=True)
    command.write_text(config, list(config.aliases))
    rows = [(row, config.unused(alias)) for alias in config.aliases for row in config.explain(alias)]
    return "\n".join(
        [repr(config), repr(rows), out.getvalue(), json.dumps(as_json(config, list(config.aliases)))]
    )


@PROPERTY
@given(worlds())
def test_only_dbconfig_error_escapes_and_the_password_never_shows(world: dict[str, Any]) -> None:
    secret = world["secret"]
    forms = {secret, quote(secret, safe="")}
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        write(base / "dbconfig.json", world["config"])
        if world["secrets"] is not None:
            write(base / ".secrets" / "dbconfig.json", world["secrets"])
        environ = dict(world["environ"])
        if world["password_file"]:
            (base / "pw").write_text(secret + "\n")
            environ[world["password_file"]] = str(base / "pw")
        with recorded() as logged:
            try:
                config = load_config(
                    base, environ=environ, environment=world["environment"], overrides=world["overrides"]
                )
            except DbConfigError as exc:
                shown = chain_texts(exc)
                assert not any("Unexpected" in text for text in shown), shown[0]
            else:
                config.databases()
                shown = [everything_shown(config)]
        for text in shown + logged:
            for form in forms:
                assert form not in text


@PROPERTY
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_any_file_text_is_read_or_refused_with_the_file_named(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "dbconfig.json").write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            load_config(folder, environ={})
        except DbConfigError as exc:
            assert "Unexpected" not in str(exc)
            assert "dbconfig.json" in str(exc) or "DBCONFIG" in str(exc) or "Alias" in str(exc)
