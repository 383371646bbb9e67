"""Hand-written bad inputs, one or more per kind: each is a DbConfigError naming the source,
the alias and the fix, with no secret in the message, its arguments or its exception chain."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

from django_dbconfig import DbConfigError, load_config
from django_dbconfig.conf.config import display_value
from django_dbconfig.core.keys import KEYS

VALID_KEYS = ", ".join(KEYS)

SECRET = "s3cret-Planted-pw"
PG = {"backend": "postgresql", "name": "app"}


def chain(error: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def assert_clean(error: DbConfigError) -> None:
    """No secret in the message, the arguments, repr, or anything the error chains to."""
    for item in chain(error):
        assert SECRET not in str(item)
        assert SECRET not in repr(item.args)
    assert "Unexpected" not in str(error)


def load_error(project: Any, environ: dict[str, str] | None = None, **kwargs: Any) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DbConfigError) as info:
            project.load(environ, **kwargs)
    assert_clean(info.value)
    return str(info.value).replace(str(project.root), "<base>")


# ------------------------------------------------------------------ sources and key paths


def test_profile_errors_show_the_full_key_path(project: Any) -> None:
    project.write_config(
        {"environments": {"production": {"databases": {"default": {**PG, "port": "5432x"}}}}}
    )
    assert load_error(project, environment="production") == (
        'dbconfig.json: environments.production.databases.default.port (alias "default"): '
        "port: expected a whole number, got a string."
    )


def test_secrets_profile_errors_show_the_full_key_path(project: Any) -> None:
    project.write_config({"databases": {"default": PG}, "environments": {"production": {}}})
    project.write_secrets(
        {"environments": {"production": {"databases": {"default": {"password": ["x", SECRET]}}}}}
    )
    assert load_error(project, environment="production") == (
        '.secrets/dbconfig.json: environments.production.databases.default.password (alias "default"): '
        "password: expected a string, got a list (the value is not shown: password is secret)."
    )


# ------------------------------------------------------------------ all errors at once


def test_every_wrong_value_is_listed_with_its_source(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {**PG, "port": 0, "sslmode": "strict"},
                "analytics": {**PG, "statement_timeout": "forever"},
            },
            "routes": {"reports": "nowhere"},
        }
    )
    project.write_secrets({"databases": {"default": {"pasword": SECRET}}})
    message = load_error(
        project, {"DBCONFIG_DEFAULT_CONNECT_TIMEOUT": "soon", "DBCONFIG_ANALYTICS_READ_ONLY": "maybe"}
    )
    assert message.splitlines() == [
        "6 problems in the database configuration:",
        '- dbconfig.json: databases.default.port (alias "default"): port: expected a port from 1 to 65535, got 0.',
        '- dbconfig.json: databases.default.sslmode (alias "default"): sslmode: "strict" is not one of '
        '"disable", "allow", "prefer", "require", "verify-ca" or "verify-full".',
        '- dbconfig.json: databases.analytics.statement_timeout (alias "analytics"): statement_timeout: '
        'expected a duration such as 30, "500ms", "30s", "5min" or "1h", got \'forever\'.',
        f'- .secrets/dbconfig.json: databases.default.pasword: unknown key "pasword". Valid keys: {VALID_KEYS}. '
        'Did you mean "password"?',
        '- DBCONFIG_ANALYTICS_READ_ONLY (alias "analytics"): read_only: expected true or false '
        '(also 1/0, yes/no, on/off), got "maybe".',
        '- DBCONFIG_DEFAULT_CONNECT_TIMEOUT (alias "default"): connect_timeout: expected a duration such as '
        '30, "500ms", "30s", "5min" or "1h", got \'soon\'.',
    ]


def test_errors_of_several_aliases_after_merging_are_listed_together(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {"backend": "sqlite", "name": "a.db", "sslmode": "require"},
                "other": {"backend": "mysql", "name": "x", "search_path": ["a"]},
            },
            "routes": {"a": "nope", "b": "nada"},
        }
    )
    message = load_error(project)
    assert message.startswith("2 problems in the database configuration:\n")
    assert "databases.default.sslmode" in message and "databases.other.search_path" in message


# ------------------------------------------------------------------ bounds


def deep(levels: int) -> Any:
    value: Any = SECRET
    for _ in range(levels):
        value = {"ssl": value}
    return value


@pytest.mark.parametrize("levels", [40, 5000])
def test_deep_options_from_a_file_are_refused(project: Any, levels: int) -> None:
    text = '{"databases": {"default": {"backend": "sqlite", "name": "a", "options": '
    text += '{"x": ' * levels + json.dumps(SECRET) + "}" * levels + "}}}"
    project.write_config(text)
    assert load_error(project) == (
        "dbconfig.json: objects and lists are nested more than 32 levels deep. "
        "Flatten the configuration: no setting needs that depth."
    )


def test_deep_options_in_overrides_are_refused(project: Any) -> None:
    message = load_error(project, overrides={"databases": {"default": {"options": deep(500)}}})
    assert message == (
        "override: objects and lists are nested more than 32 levels deep. "
        "Flatten the configuration: no setting needs that depth."
    )


def test_overrides_nested_to_the_limit_are_read_and_one_level_more_is_refused(project: Any) -> None:
    def alias(levels: int) -> dict[str, Any]:
        # A third-party engine's options are its own: only the nesting is checked. The document,
        # databases, the alias, options and "a" make 4 levels above the lists.
        value: Any = "x"
        for _ in range(levels):
            value = [value]
        return {
            "backend": "postgresql",
            "name": "app",
            "engine": "myproject.db.custom",
            "options": {"a": value},
        }

    deepest = project.databases(overrides={"databases": {"default": alias(28)}})
    assert deepest["default"]["OPTIONS"]["a"] == alias(28)["options"]["a"]
    assert load_error(project, overrides={"databases": {"default": alias(29)}}) == (
        "override: objects and lists are nested more than 32 levels deep. "
        "Flatten the configuration: no setting needs that depth."
    )


def test_a_cycle_in_overrides_is_refused(project: Any) -> None:
    options: dict[str, Any] = {"password": SECRET}
    options["self"] = options
    message = load_error(project, overrides={"databases": {"default": {"options": options}}})
    assert "nested more than 32 levels deep" in message


def test_deep_options_in_a_variable_are_refused(project: Any) -> None:
    text = '{"x": ' * 3000 + json.dumps(SECRET) + "}" * 3000
    # Python 3.11's json gives up on the nesting (RecursionError); 3.13's parses it and the
    # depth bound refuses it. Either way: refused, naming the variable, showing nothing of it.
    assert load_error(project, {"DATABASE_URL": "sqlite:///a.db", "DBCONFIG_DEFAULT_OPTIONS": text}) in (
        'DBCONFIG_DEFAULT_OPTIONS (alias "default"): options: expected a JSON object (e.g. {"key": "value"}).',
        'DBCONFIG_DEFAULT_OPTIONS (alias "default"): options: nested more than 32 levels deep.',
    )


def test_a_port_with_thousands_of_digits(project: Any) -> None:
    project.write_config(
        '{"databases": {"default": {"backend": "postgresql", "name": "a", "port": ' + "9" * 5000 + "}}}"
    )
    assert load_error(project) == "dbconfig.json: a number in the file has too many digits. Fix the number."
    assert load_error(
        project.__class__(project.root / "x"), {"DBCONFIG_DEFAULT_PORT": "9" * 5000}
    ).startswith('DBCONFIG_DEFAULT_PORT (alias "default"): port: expected a whole number, got "9999999')


def test_a_big_port_number_from_overrides(project: Any) -> None:
    assert load_error(project, overrides={"databases": {"default": {**PG, "port": 10**400}}}) == (
        'override: databases.default.port (alias "default"): port: expected a port from 1 to 65535, '
        "got a number of more than 40 digits."
    )


@pytest.mark.parametrize("value", [10**400, "1" + "0" * 400 + "s", 1e308, float("inf")])
def test_enormous_durations(project: Any, value: Any) -> None:
    message = load_error(project, overrides={"databases": {"default": {**PG, "statement_timeout": value}}})
    assert message.startswith(
        'override: databases.default.statement_timeout (alias "default"): statement_timeout: '
    )
    assert len(message) < 250


def test_a_file_larger_than_a_mebibyte(project: Any) -> None:
    project.write_config(
        '{"databases": {"default": {"backend": "sqlite", "name": "' + "a" * (1 << 20) + '"}}}'
    )
    assert (
        load_error(project) == "dbconfig.json: the file is larger than 1024 KiB. Point it at the right file."
    )


def test_a_file_of_exactly_a_mebibyte_is_read(project: Any) -> None:
    document = '{"databases": {"default": {"backend": "sqlite", "name": "a"}}}'
    project.write_config(document + " " * ((1 << 20) - len(document)))
    assert project.databases()["default"]["NAME"].endswith("a")


# ------------------------------------------------------------------ paths, environ


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"config_file": "a\x00b"},
            "config_file=: the path contains a NUL character (or is bytes). Fix the path.",
        ),
        (
            {"secrets_dir": "a\x00b"},
            "secrets_dir=: the path contains a NUL character (or is bytes). Fix the path.",
        ),
        (
            {"environ": {"DBCONFIG_FILE": "x\x00"}},
            "DBCONFIG_FILE: the path contains a NUL character (or is bytes). Fix the path.",
        ),
        (
            {"environ": {"DBCONFIG_DEFAULT_PASSWORD_FILE": "x\x00"}},
            "DBCONFIG_DEFAULT_PASSWORD_FILE: the path contains a NUL character. Fix the path.",
        ),
        (
            {"environ": {1: "x"}},
            "environ=: every variable name must be a string, got a int. Pass a mapping of str to str, like os.environ.",
        ),
        (
            {"environ": {"DBCONFIG_DEFAULT_HOST": 5}},
            "DBCONFIG_DEFAULT_HOST: the value is a int, not a string.",
        ),
        ({"environ": {"DBCONFIG_FILE": 5}}, "DBCONFIG_FILE: expected a path (a string), got int."),
        ({"environment": 5}, "environment=: expected a profile name (a string), got int."),
        ({"environ": {"DBCONFIG_ENV": 5}}, "DBCONFIG_ENV: expected a profile name (a string), got int."),
        ({"overrides": [("databases", {})]}, "overrides=: expected a mapping shaped like dbconfig.json."),
        ({"environ": ["x"]}, "environ=: expected a mapping of variable names to strings, like os.environ."),
        (
            {"environ": {"DBCONFIG_SECRETS_DIR": "x\x00"}},
            "DBCONFIG_SECRETS_DIR: the path contains a NUL character (or is bytes). Fix the path.",
        ),
    ],
)
def test_odd_arguments_and_environ(project: Any, kwargs: dict[str, Any], message: str) -> None:
    # The parameter is shared by every run of the test in one process (mutation testing reruns it).
    arguments = {"environ": {}, **kwargs}
    with pytest.raises(DbConfigError) as info:
        load_config(project.root, **arguments)
    assert str(info.value) == message
    assert_clean(info.value)


def test_a_base_dir_with_a_nul_is_refused_naming_the_argument() -> None:
    with pytest.raises(DbConfigError) as info:
        load_config("a\x00b", environ={})
    assert str(info.value) == "base_dir=: the path contains a NUL character (or is bytes). Fix the path."


def test_a_directory_given_as_a_file_twin(project: Any) -> None:
    (project.root / "secret").mkdir()
    assert load_error(project, {"DBCONFIG_DEFAULT_PASSWORD_FILE": "secret"}) == (
        "DBCONFIG_DEFAULT_PASSWORD_FILE: the file <base>/secret is a directory. Point it at a file."
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_twin_gets_the_permission_hint(project: Any) -> None:
    path = project.write_file("secret", SECRET)
    path.chmod(0)
    assert "permission denied. Check its permissions" in load_error(
        project, {"DBCONFIG_DEFAULT_PASSWORD_FILE": "secret"}
    )


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("DBCONFIG_DEFAULT_PASWORD_FILE", "DBCONFIG_DEFAULT_PASSWORD_FILE"),
        # Matched without its suffix: with it, DBCONFIG_DEFAULT_URL would come closer.
        ("DBCONFIG_DEFAULT_UER_FILE", "DBCONFIG_DEFAULT_USER_FILE"),
        # No alias known yet: the variables of "default" are the candidates.
        ("DBCONFIG_DEFAULT_HSOT", "DBCONFIG_DEFAULT_HOST"),
    ],
)
def test_did_you_mean_keeps_the_file_suffix(project: Any, variable: str, meant: str) -> None:
    message = load_error(project, {variable: "/run/secrets/db"})
    assert message.startswith(f"{variable}: not a django-dbconfig variable. Use DBCONFIG_<ALIAS>_<KEY>")
    assert message.endswith(f'Did you mean "{meant}"?')


def test_a_variable_with_no_alias_before_its_key_is_no_dbconfig_variable(project: Any) -> None:
    message = load_error(project, {"DBCONFIG__HOST": "db"})
    assert message.startswith("DBCONFIG__HOST: not a django-dbconfig variable. Use DBCONFIG_<ALIAS>_<KEY>")


def test_a_variable_naming_an_impossible_alias_is_refused_naming_it(project: Any) -> None:
    assert load_error(project, {"DBCONFIG_1ABC_HOST": "db"}) == (
        'DBCONFIG_1ABC_HOST: alias "1abc" is not a valid alias name. Use lowercase letters, digits and '
        'underscores, starting with a letter (e.g. "analytics", "read_replica"), so that it maps to '
        "environment variables."
    )


# ------------------------------------------------------------------ JSON and control characters


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"databases": {"default": {"backend": "sqlite", "name": "a"}}, "databases": {}}',
            'dbconfig.json: the key "databases" appears twice in one object; keep one.',
        ),
        (
            '{"databases": {"default": {"backend": "sqlite", "password": "a", "password": "'
            + SECRET
            + '"}}}',
            'dbconfig.json: the key "password" appears twice in one object; keep one.',
        ),
    ],
)
def test_duplicate_keys_in_a_file(project: Any, text: str, message: str) -> None:
    project.write_config(text)
    assert load_error(project) == message.replace('"databases"', "'databases'").replace(
        '"password"', "'password'"
    )


def test_duplicate_keys_in_a_variable(project: Any) -> None:
    message = load_error(
        project,
        {"DATABASE_URL": "sqlite:///a", "DBCONFIG_DEFAULT_OPTIONS": '{"a": 1, "a": "' + SECRET + '"}'},
    )
    assert message == (
        'DBCONFIG_DEFAULT_OPTIONS (alias "default"): options: expected a JSON object '
        "(the key 'a' appears twice in one object; keep one)."
    )


@pytest.mark.parametrize("key", ["host", "user", "name", "password", "application_name"])
def test_nul_characters_are_refused(project: Any, key: str) -> None:
    value = f"ab\x00{SECRET}"
    message = load_error(project, overrides={"databases": {"default": {**PG, key: value}}})
    assert message.startswith(
        f'override: databases.default.{key} (alias "default"): {key}: contains a NUL character'
    )


def test_nul_in_an_option_is_refused(project: Any) -> None:
    message = load_error(
        project, overrides={"databases": {"default": {**PG, "options": {"ssl": {"key": "a\x00"}}}}}
    )
    assert message == (
        'override: databases.default.options (alias "default"): options: contains a NUL character, '
        "which no database driver accepts."
    )


# ------------------------------------------------------------------ URLs


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"postgresql:/u:{SECRET}@h/app", "the URL does not start with scheme:// (e.g. postgresql://)."),
        (f"postgresql:u:{SECRET}@h/app", "the URL does not start with scheme:// (e.g. postgresql://)."),
        (f"postgresql://u:ab/{SECRET}@h/app", "the URL has an @ after the host part"),
        (f"postgresql://u:12/{SECRET}@h/app", "the URL has an @ after the host part"),
        (f"mysql://u:12?{SECRET}@h/app", "the URL has an @ after the host part"),
        (f"postgresql://u:12#{SECRET}@h/app", "the URL has an @ after the host part"),
        (f"postgresql+foo://u:{SECRET}@h/app", 'the URL scheme "postgresql+foo" names a driver'),
    ],
)
def test_malformed_urls_are_refused_without_showing_them(project: Any, url: str, message: str) -> None:
    text = load_error(project, {"DATABASE_URL": url})
    assert text.startswith(f'DATABASE_URL (alias "default"): {message}')


@pytest.mark.parametrize(
    ("url", "engine"),
    [
        ("postgresql+psycopg2://u:pw@h/app", "django_dbconfig.backends.postgresql"),
        ("postgresql+psycopg://u:pw@h/app", "django_dbconfig.backends.postgresql"),
        ("postgresql+asyncpg://u:pw@h/app", "django_dbconfig.backends.postgresql"),
        ("postgres+pg8000://u:pw@h/app", "django_dbconfig.backends.postgresql"),
        ("mysql+mysqldb://u:pw@h/app", "django_dbconfig.backends.mysql"),
        ("mysql+pymysql://u:pw@h/app", "django_dbconfig.backends.mysql"),
        ("mariadb+mariadbconnector://u:pw@h/app", "django_dbconfig.backends.mysql"),
        ("sqlite+aiosqlite:///app.db", "django.db.backends.sqlite3"),
        ("sqlite+pysqlite:///app.db", "django.db.backends.sqlite3"),
    ],
)
def test_sqlalchemy_driver_suffixes_are_dropped(project: Any, url: str, engine: str) -> None:
    config = project.load({"DATABASE_URL": url})
    settings = config.databases()["default"]
    assert settings["ENGINE"] == engine
    assert Path(settings["NAME"]).name in ("app", "app.db")
    if "sqlite" not in url:
        assert (settings["HOST"], settings["USER"], settings["PASSWORD"]) == ("h", "u", "pw")
    scheme = url.partition("+")[0]
    assert config.vendors["default"] == {"postgres": "postgresql"}.get(scheme, scheme)


def test_unknown_driver_suffix_lists_the_known_ones(project: Any) -> None:
    message = load_error(project, {"DATABASE_URL": "mysql+oursql://u@h/app"})
    assert "mysql+ mysqldb, pymysql, mysqlconnector" in message
    assert "postgresql+ psycopg, psycopg2" in message


# ------------------------------------------------------------------ masking and unused keys


def test_a_secret_nested_in_options_is_masked(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {
                    **PG,
                    # A third-party engine may take options of any shape.
                    "engine": "custom.backends.postgresql",
                    "options": {"ssl": {"ca": "ca.pem", "passphrase": SECRET}, "x": [{"token": SECRET}]},
                }
            }
        }
    )
    config = project.load()
    rows = {row.key: row.value for row in config.explain("default")}
    assert rows["options.ssl"] == '{"ca": "ca.pem", "passphrase": "********"}'
    assert rows["options.x"] == '[{"token": "********"}]'
    assert SECRET not in repr(config) and SECRET not in str(config.explain("default"))
    assert display_value("options.ssl", {"passphrase": SECRET}) == '{"passphrase": "********"}'


def test_a_secrets_password_for_an_alias_a_profile_moved_to_sqlite_is_unused(project: Any) -> None:
    project.write_config(
        {
            "databases": {"default": PG},
            "environments": {"dev": {"databases": {"default": {"backend": "sqlite", "name": "a.db"}}}},
        }
    )
    project.write_secrets({"databases": {"default": {"password": SECRET}}})
    config = project.load(environment="dev")
    assert "PASSWORD" not in config.databases()["default"]
    assert [(r.key, r.value, r.source) for r in config.unused("default")] == [
        ("password", "********", ".secrets/dbconfig.json: databases.default.password")
    ]
    # In the layer that chose SQLite, the same key is still an error.
    project.write_secrets({"databases": {"default": {"backend": "sqlite", "name": "a", "password": SECRET}}})
    assert "password is not supported on SQLite" in load_error(project, environment="dev")


def test_the_secrets_file_can_unset_a_password(project: Any) -> None:
    project.write_config({"databases": {"default": {**PG, "password": SECRET}}})
    project.write_secrets({"databases": {"default": {"password": None}}})
    config = project.load()
    assert "PASSWORD" not in config.databases()["default"]
    assert "password" not in {row.key for row in config.explain("default")}


def test_no_secret_in_log_records(project: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    project.write_config({"databases": {"default": {**PG, "password": SECRET, "port": 0}}})
    load_error(project)
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h:5432/app", "postgresql://u:********@h:5432/app"),
        ("postgresql://u:pw:more@h/app", "postgresql://u:********@h/app"),  # a colon in the password
        ("postgresql://u@h/app", "postgresql://u@h/app"),
        ("postgresql://h/app", "postgresql://h/app"),
        ("sqlite:////srv/app/db.sqlite3", "sqlite:////srv/app/db.sqlite3"),
        ("not a url", "********"),
        (
            "postgresql://u:pw@h/app?sslmode=require&sslpassword=k=v&application_name=x",
            "postgresql://u:********@h/app?sslmode=require&sslpassword=********&application_name=x",
        ),
        (
            "postgresql://u:pw@h/app?sslrootcert=/etc/ca.pem&password=p?q",
            "postgresql://u:********@h/app?sslrootcert=/etc/ca.pem&password=********",
        ),
        ("mysql://u:pw@h/app?next=https://x/y", "mysql://u:********@h/app?next=https://x/y"),
        # Only an option's name says it is secret, not its value.
        (
            "postgresql://h/app?application_name=password-reset",
            "postgresql://h/app?application_name=password-reset",
        ),
    ],
)
def test_a_url_is_shown_with_every_password_in_it_masked(url: str, shown: str) -> None:
    from django_dbconfig.conf.config import mask_url

    assert mask_url(url) == shown


def test_a_file_twin_ending_in_a_windows_line_end_loses_only_that(project: Any) -> None:
    (project.root / "pw.txt").write_bytes(b"\rpw\r\n")
    project.write_config({"databases": {"default": PG}})
    config = project.load(environ={"DBCONFIG_DEFAULT_PASSWORD_FILE": "pw.txt"})
    assert config.values("default")["password"] == "\rpw"


def test_unused_rows_carry_their_typed_values(project: Any) -> None:
    project.write_config(
        {
            "databases": {"default": PG},
            "environments": {"dev": {"databases": {"default": {"backend": "sqlite", "name": "a.db"}}}},
        }
    )
    project.write_secrets({"databases": {"default": {"password": SECRET, "port": 6432}}})
    config = project.load(environment="dev")
    assert [(row.key, value) for row, value in config.typed_rows("default", unused=True)] == [
        ("port", 6432),
        ("password", SECRET),
    ]


def test_an_environ_that_is_no_mapping_is_refused_naming_the_argument() -> None:
    with pytest.raises(DbConfigError) as info:
        load_config(environ=["DATABASE_URL"])  # type: ignore[arg-type]
    assert str(info.value) == "environ=: expected a mapping of variable names to strings, like os.environ."


def test_a_base_dir_that_is_no_path_is_refused_naming_the_argument() -> None:
    with pytest.raises(DbConfigError) as info:
        load_config(5, environ={})  # type: ignore[arg-type]
    assert str(info.value) == "base_dir=: expected a path (a string), got int."


def test_a_secrets_dir_variable_with_a_nul_is_refused_naming_the_variable(project: Any) -> None:
    assert load_error(project, {"DBCONFIG_SECRETS_DIR": "vault\x00"}) == (
        "DBCONFIG_SECRETS_DIR: the path contains a NUL character (or is bytes). Fix the path."
    )


class _LoopingEnviron(dict[str, str]):
    """An environ mapping whose lookups call themselves without end (a user's buggy wrapper)."""

    def get(self, key: str, default: Any = None) -> Any:
        return self.get(key, default)


class _BrokenEnviron(dict[str, str]):
    """An environ mapping whose lookups raise an exception of their own."""

    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError(SECRET)


def test_a_recursion_while_loading_is_a_dbconfig_error() -> None:
    with pytest.raises(DbConfigError) as info:
        load_config(environ=_LoopingEnviron())
    assert str(info.value) == (
        "The database configuration is nested too deeply (a cycle in overrides=?). "
        "Pass plain JSON-shaped mappings."
    )
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_any_other_exception_while_loading_is_a_dbconfig_error_naming_its_type() -> None:
    with pytest.raises(DbConfigError) as info:
        load_config(environ=_BrokenEnviron())
    assert str(info.value) == (
        "Unexpected RuntimeError while reading the database configuration. "
        "Please report this to django-dbconfig with the traceback."
    )
    assert all(SECRET not in str(item) for item in chain(info.value))


def test_a_config_file_outside_base_dir_is_named_by_its_whole_path(project: Any) -> None:
    (project.root / "app").mkdir()
    bad = project.write_file("bad.json", "{")
    with pytest.raises(DbConfigError) as info:
        load_config(project.root / "app", environ={}, config_file=bad)
    assert str(info.value) == (
        f"{bad}: not valid JSON (Expecting property name enclosed in double quotes at line 1, "
        "column 2). Fix the syntax."
    )
