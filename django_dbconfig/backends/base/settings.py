"""What every backend shares: the table of keys it honours and Django's own keys."""

from __future__ import annotations

import importlib.util
import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from django_dbconfig.core.types import DatabaseSettings

# Keys every backend honours: Django's own settings and the connection's identity.
COMMON_KEYS = frozenset(
    {
        "url",
        "backend",
        "engine",
        "name",
        "conn_max_age",
        "conn_health_checks",
        "atomic_requests",
        "autocommit",
        "time_zone",
        "disable_server_side_cursors",
        "test",
        "options",
        "migrate",
        "replica_of",
        "max_replica_lag",
    }
)
# Keys every client/server backend honours.
SERVER_KEYS = COMMON_KEYS | {
    "host",
    "port",
    "user",
    "password",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "statement_timeout",
    "lock_timeout",
    "connect_timeout",
    "read_only",
    "network_timeout",
    "pooler",
    "password_provider",
}

# Why another backend refuses Galera's keys (wsrep_sync_wait, galera_cluster_size).
GALERA_ONLY = {
    "wsrep_sync_wait": "It asks a MariaDB/MySQL Galera node for causal reads. On PostgreSQL, "
    "reads that must see every committed write go to the primary (or the standbys run "
    "synchronous_commit = remote_apply); remove it for this alias.",
    "galera_cluster_size": "It is the node count of a MariaDB/MySQL Galera cluster, which dbcheck "
    "compares with wsrep_cluster_size; remove it for this alias.",
}


class OptionConflict(ValueError):
    """A driver option in `options` that the alias's keys also generate, and that cannot be merged."""

    def __init__(self, option: str, detail: str) -> None:
        super().__init__(f"options.{option} {detail}")
        self.option = option
        self.detail = detail


@dataclass(frozen=True)
class RenderContext:
    """What rendering needs besides the alias's own values."""

    alias: str
    base_dir: Path
    django_version: tuple[int, int]


class Backend:
    """One backend family: which keys it takes, its defaults, and its DATABASES entry."""

    name: ClassVar[str]
    display: ClassVar[str]
    engine: ClassVar[str]
    # ENGINE paths of earlier releases that load the same engine (django_dbconfig/engines/).
    earlier_engines: ClassVar[tuple[str, ...]] = ()
    # Django's own engine for this family, which this family's engine subclasses.
    django_engine: ClassVar[str] = ""
    # Every name OPTIONS may hold for this family: the driver's connection parameters
    # and what Django's engine reads itself. Anything else fails at connect time.
    driver_options: ClassVar[frozenset[str]] = frozenset()
    # Each driver option the alias's keys generate, and those keys: a user's option of
    # the same name is merged with the generated one (merge_option) or refused.
    generated_by: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    # Options of `options` that are refused outright, and the key to use instead.
    key_instead: ClassVar[Mapping[str, str]] = {}
    # Values of the `engine` key that select this renderer's engine rather than being
    # rendered verbatim: a short name and the dotted path of the engine it stands in for.
    engine_names: ClassVar[tuple[str, ...]] = ()
    keys: ClassVar[frozenset[str]]
    # Why a key is not honoured, where there is more to say than "not supported".
    reasons: ClassVar[Mapping[str, str]] = {}
    defaults: ClassVar[Mapping[str, Any]] = {}
    needs_name: ClassVar[bool] = True
    # The driver: any one of these modules, and the command that installs one.
    driver_modules: ClassVar[tuple[str, ...]] = ()
    install: ClassVar[str] = ""
    # Read-only mode as rendered: the OPTIONS entry it goes into and how it reads there
    # (routers/readonly.py's guard names the alias when the server refuses a write).
    read_only_option: ClassVar[str | None] = None
    read_only_pattern: ClassVar[re.Pattern[str] | None] = None

    # The django.db.utils error Django raises when this family's server refuses a write:
    # the guard raises its refusal of a statement lifting read-only mode as the same kind.
    read_only_error: ClassVar[str] = "DatabaseError"

    def refuses_write(self, error: BaseException | None) -> bool:
        """Whether a driver error is the server refusing a write in a read-only session."""
        return False

    def is_family_engine(self, engine: str) -> bool:
        """Whether an ENGINE path is this family's engine: ours (by any of its paths or names), or
        Django's own, which ours subclasses and which reads the same driver options."""
        return engine in (self.engine, *self.earlier_engines, *self.engine_names, self.django_engine)

    def merge_option(self, option: str, generated: Any, given: Any) -> Any:
        """The one value of a driver option both the keys and `options` give.

        Equal values are one value; two objects (MySQL's `ssl`) merge part by part.
        Anything else raises OptionConflict: the user's value would silently replace
        the generated one, or the reverse.
        """
        if given == generated:
            return generated
        if isinstance(generated, Mapping) and isinstance(given, Mapping):
            differing = sorted(
                str(part) for part in generated.keys() & given.keys() if generated[part] != given[part]
            )
            if differing:
                raise OptionConflict(option, f"sets {', '.join(differing)} differently")
            return {**generated, **given}
        raise OptionConflict(option, "gives another value")

    def read_only_lift_words(self, *, session_pooler: bool) -> tuple[str, ...]:
        """Lower-case words one of which is in every statement `read_only_lift` finds;
        two words with a space between (`read write`) are both in it, anywhere.

        The guard reads a statement only when its text has one of them, in any case,
        so that ordinary queries cost a few substring searches.
        """
        return ()

    def read_only_lift(self, sql: str, params: Any, *, session_pooler: bool) -> str | None:
        """The form of a statement in `sql` that would lift read-only mode, or None.

        `session_pooler`: the alias has `pooler: session`, whose settings a reset clears.
        """
        return None

    def driver_installed(self) -> bool:
        return not self.driver_modules or any(installed(module) for module in self.driver_modules)

    def validate(self, values: Mapping[str, Any]) -> tuple[str, str] | None:
        """What is wrong with values that are each valid alone: (the key to blame, why), or None."""
        return None

    def render(self, values: Mapping[str, Any], ctx: RenderContext) -> DatabaseSettings:
        """Return Django's DATABASES entry for validated values (defaults applied)."""
        settings = self.render_common(values, ctx)
        options = self.render_options(values, ctx)
        for option, given in collect_options(values).items():
            if option in self.key_instead:
                raise OptionConflict(option, f"is set by the {self.key_instead[option]} key; use that key")
            options[option] = (
                self.merge_option(option, options[option], given) if option in options else given
            )
        if options:
            settings["OPTIONS"] = options
        return settings

    def render_common(self, values: Mapping[str, Any], ctx: RenderContext) -> DatabaseSettings:
        settings: DatabaseSettings = {"ENGINE": self.engine_of(values)}
        for key, django_key in (
            ("name", "NAME"),
            ("user", "USER"),
            ("password", "PASSWORD"),
            ("host", "HOST"),
            ("port", "PORT"),
        ):
            if key in values:
                settings[django_key] = values[key]  # type: ignore[literal-required]
        for key, django_key in (
            ("conn_max_age", "CONN_MAX_AGE"),
            ("conn_health_checks", "CONN_HEALTH_CHECKS"),
            ("atomic_requests", "ATOMIC_REQUESTS"),
            ("autocommit", "AUTOCOMMIT"),
            ("time_zone", "TIME_ZONE"),
            ("disable_server_side_cursors", "DISABLE_SERVER_SIDE_CURSORS"),
        ):
            if key in values:
                settings[django_key] = values[key]  # type: ignore[literal-required]
        test = {
            name.removeprefix("test."): value for name, value in values.items() if name.startswith("test.")
        }
        if values.get("replica_of"):
            # A replica mirrors its primary in tests: Django creates no test database for it.
            test.setdefault("MIRROR", values["replica_of"])
        if test:
            settings["TEST"] = test
        return settings

    def render_options(self, values: Mapping[str, Any], ctx: RenderContext) -> dict[str, Any]:
        return {}

    def engine_of(self, values: Mapping[str, Any]) -> str:
        """The ENGINE an alias renders: this project's, unless `engine` names another one."""
        engine = values.get("engine")
        return self.engine if engine is None or engine in self.engine_names else str(engine)

    def serves(self, engine: str) -> bool:
        """Whether an ENGINE path loads this renderer's engine (today's path or an earlier one)."""
        return engine in (self.engine, *self.earlier_engines)

    def keys_from_options(
        self, options: Mapping[str, Any], base_dir: Path
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split a hand-written OPTIONS into alias keys and options kept verbatim (for --export).

        Rendering the keys back gives the same OPTIONS; what does not map cleanly stays verbatim.
        """
        return {}, dict(options)

    def keys_from_session(self, session: Mapping[str, str]) -> dict[str, Any]:
        """The alias keys of the session settings an engine sends behind a pooler (for --export)."""
        return {}


LOOPBACK_HOSTS = frozenset({"", "localhost", "localhost.localdomain"})


def is_loopback(host: str) -> bool:
    """Whether a HOST never leaves this machine: no host, a Unix socket, localhost, a loopback address."""
    if host in LOOPBACK_HOSTS or host.startswith("/"):
        return True  # no host or a Unix socket directory never leaves the machine
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def installed(module: str) -> bool:
    """Whether `module` can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def render_extra(values: Mapping[str, Any], session: Mapping[str, str]) -> dict[str, Any]:
    """What django-dbconfig's engines read besides Django's keys: the DBCONFIG entry.

    `pooler` and the session settings (as the server names them) for the engine to
    send as SET statements and for dbcheck to read back; the dotted path of the
    password provider. Never a secret.
    """
    extra: dict[str, Any] = {}
    if values.get("pooler"):
        extra["pooler"] = values["pooler"]
        if session:
            extra["session_settings"] = dict(session)
    if values.get("password_provider"):
        extra["password_provider"] = values["password_provider"]
    return extra


def collect_options(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name.removeprefix("options."): value for name, value in values.items() if name.startswith("options.")
    }


def resolve_path(value: str, base_dir: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base_dir / path)


def path_key(value: object, base_dir: Path) -> str | None:
    """An absolute path as a path key (relative to base_dir when inside it), or None."""
    if not isinstance(value, str) or not Path(value).is_absolute():
        return None  # a relative path is relative to the process's directory: kept verbatim
    path = Path(value)
    return str(path.relative_to(base_dir)) if path.is_relative_to(base_dir) else value


def whole_number(value: object) -> int | None:
    """An int (not a bool, nor the text of a number, which would render differently), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def whole_seconds(ms: int, *, minimum: int = 1) -> int:
    """Round milliseconds up to whole seconds: a timeout is never made shorter than asked."""
    return max(minimum, math.ceil(ms / 1000))


class Keepalive(NamedTuple):
    """TCP settings that bound how long a connection waits on a server that vanished.

    An idle connection (or one waiting on a long query) sends keepalive probes after
    `idle` seconds, every `interval` seconds, and gives up after `probes` unanswered
    ones; data sent and not acknowledged within `user_timeout_ms` (TCP_USER_TIMEOUT)
    ends the connection too. A healthy server answers probes, so a long query lives.
    """

    idle: int
    interval: int
    probes: int
    user_timeout_ms: int


def keepalive(network_timeout_ms: int) -> Keepalive:
    """Split network_timeout between the keepalive probes and TCP_USER_TIMEOUT."""
    seconds = whole_seconds(network_timeout_ms)
    # Half the time idle, then three probes over the other half: a silent peer is
    # found within network_timeout, rounded up to whole seconds.
    idle = max(1, seconds // 2)
    interval = max(1, (seconds - idle) // 3)
    return Keepalive(idle=idle, interval=interval, probes=3, user_timeout_ms=network_timeout_ms)
