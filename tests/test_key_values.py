"""Each key's reading of a value, from a file and from a variable, and the helpers of its messages.

Server-free and exact: what a value becomes, or the whole message that refuses it.
"""

from __future__ import annotations

from typing import Any

import pytest

from django_dbconfig.core.durations import format_duration, parse_duration
from django_dbconfig.core.errors import did_you_mean, one_of, quoted, shown
from django_dbconfig.core.keys import KEYS, MAX_DEPTH


def coerce(key: str, value: Any, *, from_env: bool = False) -> Any:
    return KEYS[key].coerce(value, from_env=from_env)


def refusal(key: str, value: Any, *, from_env: bool = False) -> str:
    with pytest.raises(ValueError) as caught:
        coerce(key, value, from_env=from_env)
    return str(caught.value)


@pytest.mark.parametrize(
    ("key", "value", "from_env", "expected"),
    [
        ("network_timeout", None, False, None),
        ("network_timeout", " NULL ", True, None),
        ("network_timeout", "none", True, None),
        ("network_timeout", "1s", False, 1000),
        ("network_timeout", "90", True, 90_000),
        ("connect_timeout", None, False, None),
        ("connect_timeout", "Null", True, None),
        ("connect_timeout", " none ", True, None),
        ("conn_max_age", " none ", True, None),
        ("conn_max_age", "NULL", True, None),
        ("conn_max_age", 86_400, False, 86_400),  # the largest allowed: one day
        ("connect_timeout", "2500ms", False, 2500),
        ("pooler", None, False, None),
        ("pooler", " none ", True, None),
        ("pooler", "", True, None),
        ("pooler", "NULL", True, None),
        ("pooler", " Transaction ", False, "transaction"),
        (
            "engine",
            " django.contrib.gis.db.backends.postgis ",
            False,
            "django.contrib.gis.db.backends.postgis",
        ),
        ("password_provider", " myproject.db.token ", True, "myproject.db.token"),
        # Django's and other tools' names of a backend read as this project's, in any case.
        ("backend", " Postgres ", False, "postgresql"),
        ("backend", "PGSQL", True, "postgresql"),
        ("backend", "sqlite3", False, "sqlite"),
        ("host", ["db"], False, "db"),  # a list of one host is that host
        ("galera_cluster_size", " 3 ", True, 3),
        ("galera_cluster_size", 1, False, 1),  # one node: a cluster being bootstrapped
        ("wsrep_sync_wait", 15, False, 15),  # every check of the bitmask
        ("migrate", {"user": "owner", "port": 6432, "statement_timeout": "5min"}, False, None),
    ],
)
def test_a_value_becomes_what_the_key_keeps(key: str, value: Any, from_env: bool, expected: Any) -> None:
    if key == "migrate":  # each entry is read as that key itself reads it
        expected = {"user": "owner", "port": 6432, "statement_timeout": 300_000}
    assert coerce(key, value, from_env=from_env) == expected


def test_migrate_from_a_variable_is_json_whose_entries_read_as_from_a_variable() -> None:
    assert coerce("migrate", '{"user": "owner", "statement_timeout": "90"}', from_env=True) == {
        "user": "owner",
        "statement_timeout": 90_000,
    }


@pytest.mark.parametrize(
    ("key", "value", "from_env", "message"),
    [
        (
            "network_timeout",
            "999ms",
            False,
            "expected a duration of at least 1s, or null to turn it off, got '999ms'",
        ),
        (
            "network_timeout",
            "null",
            False,  # in a file, null is JSON's null, not the text "null"
            'expected a duration such as 30, "500ms", "30s", "5min" or "1h", got \'null\'',
        ),
        ("pooler", "none", False, '"none" is not one of "session" or "transaction".'),
        (
            "pooler",
            "sesion",
            False,
            '"sesion" is not one of "session" or "transaction". Did you mean "session"?',
        ),
        (
            "engine",
            "django.db. backends",
            False,
            'expected a short name such as "postgis", or a dotted module path such as '
            "\"django_prometheus.db.backends.postgresql\", got 'django.db. backends'",
        ),
        (
            "password_provider",
            "myproject",
            False,
            'expected the dotted path of a callable such as "myproject.db.token", got "myproject"',
        ),
        (
            "password_provider",
            "myproject.1db.token",
            False,
            'expected the dotted path of a callable such as "myproject.db.token", got "myproject.1db.token"',
        ),
        (
            "migrate",
            {"usr": "owner"},
            False,
            '"usr" cannot be set for migrate: it takes host, port, user, password, sslmode, sslrootcert, '
            "sslcert, sslkey, connect_timeout, statement_timeout, lock_timeout, "
            "idle_in_transaction_session_timeout, application_name (the same database, reached with "
            'other credentials). Did you mean "user"?',
        ),
        ("migrate", {"port": "6432"}, False, "port: expected a whole number, got a string"),
        # From a variable, digits are a whole number of seconds, quoted back as a number.
        ("connect_timeout", "100000", True, "100000 is longer than a day; check the unit (ms, s, min, h)"),
        ("network_timeout", "100000", True, "100000 is longer than a day; check the unit (ms, s, min, h)"),
        ("connect_timeout", "100000", False, "'100000' is longer than a day; check the unit (ms, s, min, h)"),
        # Up to 20 digits from a variable are read as a number; a longer text is quoted back.
        (
            "statement_timeout",
            "9" * 20,
            True,
            f"{'9' * 20} is longer than a day; check the unit (ms, s, min, h)",
        ),
        (
            "statement_timeout",
            "9" * 21,
            True,
            f"'{'9' * 21}' is longer than a day; check the unit (ms, s, min, h)",
        ),
        ("options", ["a"], False, "expected an object, got a list"),
        ("host", [], False, 'expected a host or a non-empty list of hosts, e.g. ["pg-a", "pg-b"]'),
        ("name", "", False, "expected a non-empty string"),
        (
            "galera_cluster_size",
            0,
            False,
            "expected the number of nodes of the Galera cluster (1 or more), got 0",
        ),
        (
            "migrate",
            {"password": ["hunter2"]},
            False,
            "password: expected a string (the value is not shown: password is secret)",
        ),
    ],
)
def test_a_value_the_key_refuses_is_named_with_what_was_expected(
    key: str, value: Any, from_env: bool, message: str
) -> None:
    assert refusal(key, value, from_env=from_env) == message


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (0, 0),
        (1.5, 1500),
        ("250ms", 250),
        (" 2 s ", 2000),
        ("1.5min", 90_000),
        ("2h", 7_200_000),
        ("24h", 86_400_000),
    ],
)
def test_durations_read_in_their_units(value: Any, ms: int) -> None:
    assert parse_duration(value) == ms


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, 'expected a duration such as 30, "500ms", "30s" or "5min", got a boolean'),
        (-1, "expected a duration of 0 or more, got -1"),
        (float("nan"), "expected a duration of 0 or more, got nan"),
        (86_401, "86401 is longer than a day; check the unit (ms, s, min, h)"),
        # More seconds than a day has milliseconds: refused before any float conversion.
        (86_400_001, "86400001 is longer than a day; check the unit (ms, s, min, h)"),
        ("25h", "'25h' is longer than a day; check the unit (ms, s, min, h)"),
        ("5 mins", 'expected a duration such as 30, "500ms", "30s", "5min" or "1h", got \'5 mins\''),
        ([5], 'expected a duration such as 30, "500ms", "30s" or "5min", got list'),
    ],
)
def test_a_bad_duration_says_what_was_expected(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0ms"), (999, "999ms"), (1000, "1s"), (61_000, "61s"), (120_000, "2min"), (3_600_000, "1h")],
)
def test_durations_are_shown_in_the_largest_unit_that_divides_them(ms: int, text: str) -> None:
    assert format_duration(ms) == text


def test_message_helpers_quote_choices_and_cut_long_values() -> None:
    assert [one_of([]), one_of(["a"]), one_of(["a", "b"]), one_of(["a", "b", "c"])] == [
        "",
        '"a"',
        '"a" or "b"',
        '"a", "b" or "c"',
    ]
    assert [did_you_mean("hots", ["host", "port"]), did_you_mean("zzz", ["host"])] == [
        ' Did you mean "host"?',
        "",
    ]
    forty, forty_one = "x" * 40, "x" * 41
    assert [quoted(forty), quoted(forty_one)] == [f'"{forty}"', f'"{"x" * 37}..."']
    assert [shown(True), shown("ab"), shown(12), shown(-(10**45)), shown(forty)] == [
        "True",
        "'ab'",
        "12",
        "a number of more than 40 digits",
        f"'{'x' * 36}...",  # the repr's quotes count
    ]
    assert [shown(10**39), shown(10**40)] == [str(10**39), "a number of more than 40 digits"]


@pytest.mark.parametrize(
    ("value", "kind"),
    [(True, "a boolean"), (1.5, "a number"), ({}, "an object"), (None, "null"), (b"h", "bytes")],
)
def test_a_value_of_the_wrong_type_is_named_by_its_json_kind(value: Any, kind: str) -> None:
    assert refusal("host", value) == f"expected a string, got {kind}"


@pytest.mark.parametrize(
    ("text", "pool"),
    [('  {"min_size": 2}', {"min_size": 2}), ("true", True), ("off", False)],
)
def test_pool_from_a_variable_is_a_switch_or_a_json_object(text: str, pool: Any) -> None:
    assert coerce("pool", text, from_env=True) == pool


def test_pool_text_in_a_file_is_no_json() -> None:
    assert refusal("pool", '{"min_size": 2}').startswith("expected")


@pytest.mark.parametrize(
    ("value", "from_env", "expected"),
    [
        ("asgi", False, "asgi"),
        (" ASGI ", True, "asgi"),
        (True, False, True),
        ("off", True, False),
        ({"when": "asgi", "max_size": 8}, False, {"when": "asgi", "max_size": 8}),
        ('{"max_size": 8}', True, {"max_size": 8}),
    ],
)
def test_pool_reads_asgi_a_bool_or_psycopg_pools_keywords(value: Any, from_env: bool, expected: Any) -> None:
    assert coerce("pool", value, from_env=from_env) == expected


@pytest.mark.parametrize(
    ("value", "from_env", "message"),
    [
        (
            "sometimes",
            True,
            'expected true, false, "asgi" (pooled for ASGI requests, persistent otherwise) or an object '
            'of psycopg_pool\'s keywords, got "sometimes"',
        ),
        (
            3,
            False,
            'expected true, false, "asgi" (pooled for ASGI requests, persistent otherwise) or an object '
            "of psycopg_pool's keywords, got a number",
        ),
        ({"when": "wsgi"}, False, '"when" must be "asgi" or "always", got \'wsgi\''),
    ],
)
def test_pool_refuses_other_values_listing_the_choices(value: Any, from_env: bool, message: str) -> None:
    assert refusal("pool", value, from_env=from_env) == message


@pytest.mark.parametrize(
    ("value", "from_env", "expected"),
    [
        (" app , public ", True, ("app", "public")),
        (["x" * 63], False, ("x" * 63,)),  # the longest name PostgreSQL keeps
        ([], False, 'expected a non-empty list of schema names, e.g. ["app", "public"], got a list'),
        ("app", False, 'expected a non-empty list of schema names, e.g. ["app", "public"], got a string'),
        (["app", ""], False, "expected every schema name to be a non-empty string"),
        (["app", 5], False, "expected every schema name to be a non-empty string"),
        (["a\x00b"], False, "a schema name cannot contain a NUL character"),
        (
            ["a\tb"],
            False,
            "schema name 'a\\tb' contains a control character (a tab or a new line?): remove it",
        ),
        (
            ["a\x7fb"],
            False,
            "schema name 'a\\x7fb' contains a control character (a tab or a new line?): remove it",
        ),
        (
            ["abcdefghijklmnopqrstuvwxyz\t"],
            False,
            "schema name 'abcdefghijklmnopqrst' contains a control character (a tab or a new line?): remove it",
        ),
        (["x" * 64], False, f"schema name '{'x' * 20}' is longer than 63 bytes"),
        (["é" * 32], False, f"schema name '{'é' * 20}' is longer than 63 bytes"),  # 64 bytes in UTF-8
    ],
)
def test_a_search_path_is_a_list_of_schema_names_postgresql_accepts(
    value: Any, from_env: bool, expected: Any
) -> None:
    if isinstance(expected, tuple):
        assert coerce("search_path", value, from_env=from_env) == expected
    else:
        assert refusal("search_path", value, from_env=from_env) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"a": "b\x00"}, "contains a NUL character, which no database driver accepts"),
        ({"a": ["x", "y\x00"]}, "contains a NUL character, which no database driver accepts"),
        ({"a": ("x\x00",)}, "contains a NUL character, which no database driver accepts"),
        ({"a": {"b": {"c": "\x00"}}}, "contains a NUL character, which no database driver accepts"),
        ({1: "b"}, "every option name must be a string, got a number"),
        ({"a": {2: "b"}}, "every option name must be a string, got a number"),
        ({"a\x00": "b"}, "an option name contains a NUL character"),
    ],
)
def test_options_refuse_a_nul_anywhere_and_names_that_are_no_strings(
    options: dict[Any, Any], message: str
) -> None:
    assert refusal("options", options) == message


@pytest.mark.parametrize(
    ("key", "value", "from_env", "expected"),
    [
        ("read_only", " Yes ", True, True),
        ("read_only", "on", True, True),
        ("read_only", "1", True, True),
        ("read_only", " OFF ", True, False),
        ("read_only", "no", True, False),
        ("read_only", "0", True, False),
        ("read_only", "maybe", True, 'expected true or false (also 1/0, yes/no, on/off), got "maybe"'),
        ("read_only", "true", False, "expected true or false, got a string"),  # JSON has true
        ("read_only", 1, False, "expected true or false, got a number"),
        ("port", "+5432", True, 5432),
        ("port", " 5433 ", True, 5433),
        ("port", 1, False, 1),
        ("port", 65535, False, 65535),
        ("port", "5432,5433", False, (5432, 5433)),
        ("port", [5433], False, 5433),  # a list of one port is that port
        ("port", "0" * 16 + "5432", True, 5432),  # 20 characters: the longest number read
        ("port", "X5432", True, 'expected a whole number, got "X5432"'),
        ("port", [5432, "5433"], False, (5432, 5433)),
        ("port", "-1", True, "expected a port from 1 to 65535, got -1"),
        ("port", 0, False, "expected a port from 1 to 65535, got 0"),
        ("port", 65536, False, "expected a port from 1 to 65535, got 65536"),
        ("port", "1" * 21, True, f'expected a whole number, got "{"1" * 21}"'),
        ("port", "\uff15\uff14\uff13\uff12", True, 'expected a whole number, got "\uff15\uff14\uff13\uff12"'),
        ("port", 5432.0, False, "expected a whole number, got a number"),
        ("port", "5432", False, "expected a whole number, got a string"),
        ("port", True, False, "expected a whole number, got a boolean"),
        ("port", [], False, "expected a port or a non-empty list of ports, one per host"),
        ("port", "5432,x", False, 'expected a whole number, got "x"'),
        ("port", [True], False, "expected a whole number, got a boolean"),
    ],
)
def test_switches_and_ports_read_as_json_or_variable_text(
    key: str, value: Any, from_env: bool, expected: Any
) -> None:
    if isinstance(expected, str):
        assert refusal(key, value, from_env=from_env) == expected
    else:
        assert coerce(key, value, from_env=from_env) == expected


def nested_options(depth: int, *, in_lists: bool) -> dict[str, Any]:
    """Options whose innermost value is `depth` levels below the options object."""
    value: Any = "x"
    for _ in range(depth - 1):
        value = [value] if in_lists else {"a": value}
    return {"a": value}


@pytest.mark.parametrize("in_lists", [False, True], ids=["objects", "lists"])
def test_options_nested_up_to_the_limit_are_kept_and_one_level_more_is_refused(in_lists: bool) -> None:
    deepest = nested_options(MAX_DEPTH, in_lists=in_lists)
    assert coerce("options", deepest) == deepest
    assert refusal("options", nested_options(MAX_DEPTH + 1, in_lists=in_lists)) == (
        f"nested more than {MAX_DEPTH} levels deep"
    )
