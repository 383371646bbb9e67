"""PostgreSQL's `options` startup string read back (dbconfig --export): split, -c switches, typed values."""

from __future__ import annotations

from typing import Any

import pytest

from django_dbconfig.backends.postgresql.settings import (
    parse_search_path,
    parse_startup,
    parse_switches,
    session_keys,
    session_options,
    setting_value,
    split_options,
)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", []),
        ("  -c  a=1 \t-c b=2 ", ["-c", "a=1", "-c", "b=2"]),
        (r"-c search_path=My\ Schema", ["-c", "search_path=My Schema"]),
        (r"-c x=a\\b", ["-c", r"x=a\b"]),
        ("\\ ", [" "]),
        ("a\\", ["a"]),
        ("\\", [""]),
    ],
)
def test_options_split_on_spaces_a_backslash_escaping_the_next_character(text: str, words: list[str]) -> None:
    assert split_options(text) == words


@pytest.mark.parametrize(
    ("text", "switches"),
    [
        ("", []),
        ("-c statement_timeout=5s", [("statement_timeout", "5s")]),
        ("-cstatement_timeout=5s --lock-timeout=1s", [("statement_timeout", "5s"), ("lock_timeout", "1s")]),
        ("-c Search_Path=App,public", [("search_path", "App,public")]),
        ("-c x=", [("x", "")]),
        ("-c a=1 -c b=2", [("a", "1"), ("b", "2")]),
        ("-c a=b=c", [("a", "b=c")]),
        ("xya=1", None),
        ("-c", None),  # a -c with nothing after it
        ("-c =1", None),
        ("-c x", None),
        ("--x", None),
        ("-e", None),
        ("-c a=1 -e", None),
    ],
)
def test_only_c_switches_read_back_and_anything_else_is_none(
    text: str, switches: list[tuple[str, str]] | None
) -> None:
    assert parse_switches(text) == switches


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("App, public", ("app", "public")),
        ('"App", "my ""s"""', ("App", 'my "s"')),
        ('"a",b', ("a", "b")),
        ('"a" , b', ("a", "b")),
        ("  ", None),
        ("a,", None),
        ("a b", None),
        ('"open', None),
        ('"a" b', None),
        ('a"b', None),
        (",a", None),
    ],
)
def test_search_path_reads_as_postgresql_folds_and_unquotes_it(
    text: str, names: tuple[str, ...] | None
) -> None:
    assert parse_search_path(text) == names


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("statement_timeout", "250", 250),
        ("statement_timeout", " 5 s ", 5000),
        ("lock_timeout", "2min", 120_000),
        ("lock_timeout", "1h", 3_600_000),
        ("lock_timeout", "24h", 86_400_000),
        ("lock_timeout", "25h", None),  # longer than a day: not a key's value
        ("lock_timeout", "1.5s", None),
        ("read_only", " ON ", True),
        ("read_only", "0", False),
        ("read_only", "maybe", None),
        ("search_path", '"A",b', ("A", "b")),
    ],
)
def test_a_session_setting_text_becomes_the_keys_typed_value(key: str, text: str, value: Any) -> None:
    assert setting_value(key, text) == value


def test_startup_string_read_back_for_comparing_two_of_them() -> None:
    assert parse_startup(
        '-c search_path="A",b -c statement_timeout=30s -c default_transaction_read_only=on'
    ) == {
        "search_path": ("A", "b"),
        "statement_timeout": 30_000,
        "default_transaction_read_only": True,
    }
    # Not a key, or a value no key takes: compared as written.
    assert parse_startup("-c work_mem=64MB -c lock_timeout=1.5s") == {
        "work_mem": "64MB",
        "lock_timeout": "1.5s",
    }
    assert parse_startup("-c work_mem=100") == {"work_mem": "100"}  # no key: a number stays text
    assert parse_startup("-c a=1 -c a=2") is None  # which one wins is the server's business
    assert parse_startup("-e") is None


def test_session_settings_become_alias_keys_and_the_rest_stays_as_written() -> None:
    keys, rest = session_keys(
        [
            ("search_path", '"App",public'),
            ("statement_timeout", "30000"),
            ("idle_in_transaction_session_timeout", "1min"),
            ("default_transaction_read_only", "off"),
            ("lock_timeout", "forever"),
            ("work_mem", "64MB"),
        ]
    )
    assert keys == {
        "search_path": ["App", "public"],
        "statement_timeout": "30s",
        "idle_in_transaction_session_timeout": "1min",
        "read_only": False,
    }
    assert rest == [("lock_timeout", "forever"), ("work_mem", "64MB")]


def test_rendered_session_options_read_back_to_the_same_settings() -> None:
    values = {"search_path": ("My Schema", 'q"t', "a\\b"), "lock_timeout": 1500, "read_only": True}
    text = session_options(values)
    assert text == (
        r'-c search_path="My\ Schema","q""t","a\\b" -c lock_timeout=1500ms -c default_transaction_read_only=on'
    )
    assert parse_startup(text) == {
        "search_path": ("My Schema", 'q"t', "a\\b"),
        "lock_timeout": 1500,
        "default_transaction_read_only": True,
    }
