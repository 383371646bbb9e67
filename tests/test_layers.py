"""Precedence of the six layers, per key and per alias, and how values merge."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from django_dbconfig import DbConfigError, load_config, override

POSTGRES = {"backend": "postgresql", "name": "app"}
# Highest first, as in the design.
LAYERS = ("override", "environment", "secrets", "profile", "file", "default")
TIMEOUTS = {"override": 11, "environment": 12, "secrets": 13, "profile": 14, "file": 15, "default": 5}
SOURCES = {
    "override": "override: databases.default.connect_timeout",
    "environment": "DBCONFIG_DEFAULT_CONNECT_TIMEOUT",
    "secrets": ".secrets/dbconfig.json: databases.default.connect_timeout",
    "profile": "dbconfig.json: environments.staging.databases.default.connect_timeout",
    "file": "dbconfig.json: databases.default.connect_timeout",
    "default": "default",
}


def load_with(project: Any, present: set[str]) -> Any:
    """Set connect_timeout in each layer of `present` to that layer's own number."""
    document: dict[str, Any] = {"databases": {"default": dict(POSTGRES)}, "environments": {"staging": {}}}
    if "file" in present:
        document["databases"]["default"]["connect_timeout"] = TIMEOUTS["file"]
    if "profile" in present:
        document["environments"]["staging"] = {"databases.default.connect_timeout": TIMEOUTS["profile"]}
    project.write_config(document)
    if "secrets" in present:
        project.write_secrets({"databases": {"default": {"connect_timeout": TIMEOUTS["secrets"]}}})
    environ = (
        {"DBCONFIG_DEFAULT_CONNECT_TIMEOUT": str(TIMEOUTS["environment"])} if "environment" in present else {}
    )
    overrides = (
        {"databases": {"default": {"connect_timeout": TIMEOUTS["override"]}}}
        if "override" in present
        else None
    )
    return project.load(environ, environment="staging", overrides=overrides)


@pytest.mark.parametrize(("higher", "lower"), list(itertools.combinations(LAYERS, 2)))
def test_higher_layer_beats_lower_layer(project: Any, higher: str, lower: str) -> None:
    config = load_with(project, {higher, lower})
    rows = {row.key: row for row in config.explain("default")}
    assert rows["connect_timeout"].value == f"{TIMEOUTS[higher]}s"
    assert rows["connect_timeout"].source == SOURCES[higher]
    assert config.databases()["default"]["OPTIONS"]["connect_timeout"] == TIMEOUTS[higher]


def test_env_var_beats_secrets_file(project: Any) -> None:
    project.write_config({"databases": {"default": POSTGRES}})
    project.write_secrets({"databases.default.password": "from-secrets"})
    config = project.load({"DBCONFIG_DEFAULT_PASSWORD": "from-env"})
    assert config.databases()["default"]["PASSWORD"] == "from-env"
    assert (
        project.sources(environ={"DBCONFIG_DEFAULT_PASSWORD": "x"})["password"] == "DBCONFIG_DEFAULT_PASSWORD"
    )


def test_merging_is_per_key_so_lower_layers_keep_other_keys(project: Any) -> None:
    project.write_config({"databases": {"default": {**POSTGRES, "host": "db.internal", "port": 6543}}})
    config = project.load({"DBCONFIG_DEFAULT_HOST": "other.internal"})
    default = config.databases()["default"]
    assert (default["HOST"], default["PORT"], default["NAME"]) == ("other.internal", 6543, "app")


def test_merging_is_per_alias(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {**POSTGRES, "host": "a"},
                "analytics": {"backend": "postgresql", "name": "warehouse", "host": "b"},
            }
        }
    )
    databases = project.databases({"DBCONFIG_ANALYTICS_HOST": "c"})
    assert (databases["default"]["HOST"], databases["analytics"]["HOST"]) == ("a", "c")


def test_override_argument_beats_override_block_which_beats_environment(project: Any) -> None:
    project.write_config({"databases": {"default": POSTGRES}})
    env = {"DBCONFIG_DEFAULT_HOST": "env"}
    with override({"databases.default.host": "outer"}), override({"databases.default.host": "inner"}):
        assert project.databases(env)["default"]["HOST"] == "inner"
        assert project.databases(env, overrides={"databases.default.host": "arg"})["default"]["HOST"] == "arg"
    assert project.databases(env)["default"]["HOST"] == "env"


def test_defaults_apply_to_every_alias_below_alias_keys_of_the_same_layer(project: Any) -> None:
    project.write_config(
        {
            "defaults": {"statement_timeout": "30s", "conn_max_age": 120},
            "databases": {
                "default": POSTGRES,
                "analytics": {"backend": "postgresql", "name": "w", "statement_timeout": "5min"},
            },
        }
    )
    config = project.load()
    assert project.values("default")["statement_timeout"] == "30s"
    assert project.values("analytics")["statement_timeout"] == "5min"
    assert project.sources("analytics")["conn_max_age"] == "dbconfig.json: defaults.conn_max_age"
    assert config.databases()["analytics"]["CONN_MAX_AGE"] == 120


def test_defaults_skip_aliases_whose_backend_has_no_such_setting(project: Any) -> None:
    project.write_config(
        {
            "defaults": {"search_path": ["app"]},
            "databases": {"default": POSTGRES, "local": {"backend": "sqlite", "name": "local.db"}},
        }
    )
    config = project.load()
    assert "search_path" in dict((r.key, r) for r in config.explain("default"))
    assert "search_path" not in dict((r.key, r) for r in config.explain("local"))


def test_dotted_keys_equal_nested_objects(project: Any) -> None:
    nested = {"databases": {"default": {**POSTGRES, "host": "h", "options": {"keepalives": 1}}}}
    dotted = {
        "databases.default.backend": "postgresql",
        "databases.default.name": "app",
        "databases": {"default": {"host": "h", "options.keepalives": 1}},
    }
    project.write_config(nested)
    expected = project.databases()
    project.write_config(dotted)
    assert project.databases() == expected
    assert expected["default"]["OPTIONS"]["keepalives"] == 1


def test_dotted_route_keys_keep_their_model_name(project: Any) -> None:
    project.write_config(
        {
            "databases": {"default": POSTGRES, "analytics": {"backend": "sqlite", "name": "a.db"}},
            "routes.events.PageView": "analytics",
        }
    )
    assert dict(project.load().routes) == {"events.PageView": "analytics"}


def test_options_merge_per_option_across_layers(project: Any) -> None:
    project.write_config(
        {"databases": {"default": {**POSTGRES, "options": {"keepalives": 1, "target_session_attrs": "any"}}}}
    )
    databases = project.databases({"DBCONFIG_DEFAULT_OPTIONS": '{"target_session_attrs": "read-write"}'})
    options = databases["default"]["OPTIONS"]
    assert (options["keepalives"], options["target_session_attrs"]) == (1, "read-write")


def test_url_expands_into_connection_parts_and_query_options(project: Any) -> None:
    config = project.load(
        {
            "DATABASE_URL": "postgresql://app:pw%40x@db.internal:6432/shop?sslmode=verify-full&statement_timeout=5s&keepalives=1"
        }
    )
    default = config.databases()["default"]
    assert (default["USER"], default["PASSWORD"], default["HOST"], default["PORT"], default["NAME"]) == (
        "app",
        "pw@x",
        "db.internal",
        6432,
        "shop",
    )
    assert default["OPTIONS"]["sslmode"] == "verify-full"
    assert default["OPTIONS"]["keepalives"] == 1
    assert "-c statement_timeout=5000ms" in default["OPTIONS"]["options"]
    sources = {row.key: row.source for row in config.explain("default")}
    assert sources["host"] == sources["sslmode"] == "DATABASE_URL"


def test_explicit_keys_beat_url_parts_in_the_same_layer(project: Any) -> None:
    project.write_config(
        {"databases": {"default": {"url": "postgresql://app@db/shop", "host": "explicit", "name": "other"}}}
    )
    default = project.databases()["default"]
    assert (default["HOST"], default["NAME"], default["USER"]) == ("explicit", "other", "app")


def test_url_in_higher_layer_replaces_connection_parts_of_lower_layers(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {**POSTGRES, "host": "old", "port": 6000, "user": "u", "sslmode": "require"}
            }
        }
    )
    project.write_secrets({"databases.default.password": "old-password"})
    default = project.databases({"DATABASE_URL": "postgresql://new@fresh/shop"})["default"]
    assert (default["HOST"], default["PORT"], default["USER"], default["NAME"]) == (
        "fresh",
        5432,
        "new",
        "shop",
    )
    assert "PASSWORD" not in default  # the secrets file's password belonged to the old server
    assert default["OPTIONS"]["sslmode"] == "require"  # not a connection part: kept


def test_changing_backend_drops_lower_settings_the_new_backend_cannot_use(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {**POSTGRES, "host": "db", "search_path": ["app"], "sslmode": "verify-full"}
            },
            "environments": {
                "development": {"databases": {"default": {"backend": "sqlite", "name": "dev.sqlite3"}}}
            },
        }
    )
    default = project.databases(environment="development")["default"]
    assert default == {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(project.root / "dev.sqlite3"),
        "CONN_MAX_AGE": 0,
    }


def test_the_design_example_builds_in_production_and_development(project: Any) -> None:
    project.write_config(
        {
            "defaults": {"conn_max_age": 60, "statement_timeout": "30s"},
            "databases": {
                "default": {
                    "backend": "postgresql",
                    "host": "db.internal",
                    "name": "app",
                    "search_path": ["app", "public"],
                    "sslmode": "verify-full",
                    "sslrootcert": "certs/ca.pem",
                },
                "analytics": {
                    "url": "postgresql://reporter@warehouse.internal/analytics",
                    "read_only": True,
                    "statement_timeout": "5min",
                },
                "replica": {"url": "postgresql://app@replica.internal/app", "replica_of": "default"},
            },
            "routes": {"reports": "analytics", "events.PageView": "analytics"},
            "environments": {
                "development": {
                    "databases": {
                        "default": {"backend": "sqlite", "name": "db.sqlite3"},
                        "analytics": {"backend": "sqlite", "name": "analytics.sqlite3"},
                        # On SQLite there is no replica: the alias reads the primary's file.
                        "replica": {"backend": "sqlite", "name": "db.sqlite3"},
                    }
                }
            },
        }
    )
    production = project.load()
    assert production.aliases == ("default", "analytics", "replica")
    assert dict(production.replicas) == {"default": ("replica",)}
    databases = production.databases()
    assert databases["default"]["OPTIONS"]["sslrootcert"] == str(project.root / "certs/ca.pem")
    assert databases["replica"]["TEST"] == {"MIRROR": "default"}
    assert databases["analytics"]["OPTIONS"]["options"] == (
        "-c statement_timeout=300000ms -c default_transaction_read_only=on"
    )
    development = project.load(environment="development").databases()
    assert development["analytics"]["ENGINE"] == "django.db.backends.sqlite3"
    assert development["analytics"]["CONN_MAX_AGE"] == 60
    assert development["replica"]["NAME"] == development["default"]["NAME"]


def test_no_file_and_no_variables_gives_one_sqlite_default(project: Any) -> None:
    assert project.databases() == {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(project.root / "db.sqlite3"),
            "CONN_MAX_AGE": 0,
        }
    }


def test_base_dir_defaults_to_the_current_directory(project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.root)
    assert load_config(environ={}).databases()["default"]["NAME"] == str(project.root / "db.sqlite3")


def test_config_file_and_secrets_dir_from_variables(project: Any) -> None:
    project.write_config({"databases": {"default": POSTGRES}}, "conf/other.json")
    project.write_config({"databases.default.password": "pw"}, "vault/dbconfig.json")
    config = project.load({"DBCONFIG_FILE": "conf/other.json", "DBCONFIG_SECRETS_DIR": "vault"})
    assert config.databases()["default"]["PASSWORD"] == "pw"
    assert {r.key: r.source for r in config.explain("default")}["name"] == (
        "conf/other.json (from DBCONFIG_FILE): databases.default.name"
    )


def test_config_file_argument_beats_dbconfig_file(project: Any) -> None:
    project.write_config({"databases": {"default": {**POSTGRES, "host": "from-arg"}}}, "a.json")
    project.write_config({"databases": {"default": {**POSTGRES, "host": "from-var"}}}, "b.json")
    assert (
        project.databases({"DBCONFIG_FILE": "b.json"}, config_file="a.json")["default"]["HOST"] == "from-arg"
    )


def test_environment_argument_beats_dbconfig_env(project: Any) -> None:
    project.write_config(
        {
            "databases": {"default": POSTGRES},
            "environments": {"a": {"databases.default.host": "a"}, "b": {"databases.default.host": "b"}},
        }
    )
    assert project.databases({"DBCONFIG_ENV": "a"})["default"]["HOST"] == "a"
    assert project.databases({"DBCONFIG_ENV": "a"}, environment="b")["default"]["HOST"] == "b"


def test_secrets_file_environments_overlay_the_secrets_file(project: Any) -> None:
    project.write_config({"databases": {"default": POSTGRES}, "environments": {"production": {}}})
    project.write_secrets(
        {
            "databases.default.password": "base",
            "environments": {"production": {"databases.default.password": "prod"}},
        }
    )
    assert project.databases()["default"]["PASSWORD"] == "base"
    assert project.databases(environment="production")["default"]["PASSWORD"] == "prod"


def test_file_twin_reads_the_value_without_its_trailing_newline(project: Any) -> None:
    project.write_config({"databases": {"default": POSTGRES}})
    secret = project.write_file("run/secrets/db_password", "s3cret with space\n")
    url = project.write_file("run/secrets/url", "postgresql://u@h/n\n")
    databases = project.databases(
        {
            "DBCONFIG_DEFAULT_PASSWORD_FILE": str(secret),
            "ANALYTICS_DATABASE_URL_FILE": str(url),
            "DBCONFIG_ANALYTICS_READ_ONLY": "true",
        }
    )
    assert databases["default"]["PASSWORD"] == "s3cret with space"
    assert databases["analytics"]["NAME"] == "n"


def test_alias_url_variable_applies_only_to_declared_aliases(project: Any) -> None:
    project.write_config(
        {"databases": {"default": POSTGRES, "analytics": {"backend": "sqlite", "name": "a.db"}}}
    )
    databases = project.databases(
        {
            "ANALYTICS_DATABASE_URL": "postgresql://r@w/warehouse",
            "REDIS_DATABASE_URL": "redis://cache/0",  # another program's variable: not an alias here
        }
    )
    assert set(databases) == {"default", "analytics"}
    assert databases["analytics"]["NAME"] == "warehouse"


def test_alias_url_variable_reaches_aliases_of_one_letter_and_with_underscores(project: Any) -> None:
    project.write_config(
        {"databases": {"default": POSTGRES, "x": {"name": "x.db"}, "eu_app": {"name": "eu.db"}}}
    )
    databases = project.databases(
        {"X_DATABASE_URL": "postgresql://u@x-host/x", "EU_APP_DATABASE_URL": "postgresql://u@eu-host/eu"}
    )
    assert (databases["x"]["HOST"], databases["eu_app"]["HOST"]) == ("x-host", "eu-host")


@pytest.mark.parametrize(
    "variable", ["MY-APP_DATABASE_URL_FILE", "1X_DATABASE_URL_FILE", "_DATABASE_URL_FILE"]
)
def test_url_variables_that_name_no_possible_alias_are_never_read(project: Any, variable: str) -> None:
    # Another program's variable: its file is not even opened (this one does not exist).
    databases = project.databases(
        {variable: str(project.root / "missing"), "DATABASE_URL": "postgresql://h/app"}
    )
    assert set(databases) == {"default"}


def test_migrate_entries_from_variables_are_read_as_variables(project: Any) -> None:
    config = project.load({"DATABASE_URL": "postgresql://app@h/app", "DBCONFIG_DEFAULT_MIGRATE_PORT": "6432"})
    assert {
        key: value.value for key, value in config.effective("default").items() if key.startswith("migrate")
    } == {"migrate.port": 6432}


def test_a_migrate_entry_of_several_words_from_a_variable_keeps_its_name(project: Any) -> None:
    config = project.load(
        {"DATABASE_URL": "postgresql://app@h/app", "DBCONFIG_DEFAULT_MIGRATE_CONNECT_TIMEOUT": "9"}
    )
    rows = {row.key: (row.value, row.source) for row in config.explain("default")}
    assert rows["migrate.connect_timeout"] == ("9s", "DBCONFIG_DEFAULT_MIGRATE_CONNECT_TIMEOUT")


def test_a_known_alias_ending_in_migrate_takes_its_own_variables(project: Any) -> None:
    # DBCONFIG_APP_MIGRATE_USER could be app's migrate.user or app_migrate's user: the alias
    # the files know wins.
    project.write_config({"databases": {"app_migrate": {"backend": "postgresql", "host": "h", "name": "n"}}})
    config = project.load({"DBCONFIG_APP_MIGRATE_USER": "owner"})
    assert {row.key: row.value for row in config.explain("app_migrate")}["user"] == "owner"
    assert set(config.databases()) == {"default", "app_migrate"}  # no alias "app"


def test_dbconfig_variable_declares_a_new_alias(project: Any) -> None:
    databases = project.databases(
        {
            "DBCONFIG_READ_REPLICA_URL": "postgresql://u@r/app",
            "DBCONFIG_READ_REPLICA_REPLICA_OF": "default",
            "DATABASE_URL": "postgresql://u@p/app",
        }
    )
    assert databases["read_replica"]["HOST"] == "r"
    assert databases["read_replica"]["TEST"] == {"MIRROR": "default"}


def test_alias_with_underscores_matches_the_key_from_the_right(project: Any) -> None:
    project.write_config(
        {"databases": {"default": POSTGRES, "eu_app": {"backend": "postgresql", "name": "x"}}}
    )
    databases = project.databases(
        {
            "DBCONFIG_EU_APP_APPLICATION_NAME": "shop",
            "DBCONFIG_EU_APP_NAME": "eu",
            "DBCONFIG_EU_APP_CONN_MAX_AGE": "30",
        }
    )
    assert databases["eu_app"]["OPTIONS"]["application_name"] == "shop"
    assert (databases["eu_app"]["NAME"], databases["eu_app"]["CONN_MAX_AGE"]) == ("eu", 30)


def test_empty_variable_counts_as_unset(project: Any) -> None:
    project.write_config({"databases": {"default": {**POSTGRES, "host": "file"}}})
    assert project.databases({"DBCONFIG_DEFAULT_HOST": "", "DATABASE_URL": ""})["default"]["HOST"] == "file"


def test_variable_values_are_parsed_by_key_type(project: Any) -> None:
    databases = project.databases(
        {
            "DATABASE_URL": "postgresql://u@h/app",
            "DBCONFIG_DEFAULT_SEARCH_PATH": "app, public",
            "DBCONFIG_DEFAULT_CONN_MAX_AGE": "null",
            "DBCONFIG_DEFAULT_CONN_HEALTH_CHECKS": "off",
            "DBCONFIG_DEFAULT_LOCK_TIMEOUT": "500ms",
            "DBCONFIG_DEFAULT_PORT": "6432",
            "DBCONFIG_DEFAULT_TEST": '{"NAME": "test_app"}',
        }
    )
    default = databases["default"]
    assert default["CONN_MAX_AGE"] is None
    assert default["CONN_HEALTH_CHECKS"] is False
    assert default["PORT"] == 6432
    assert default["TEST"] == {"NAME": "test_app"}
    assert default["OPTIONS"]["options"] == '-c search_path="app","public" -c lock_timeout=500ms'


def test_sources_of_every_kind_are_named(project: Any) -> None:
    project.write_config({"databases": {"default": {**POSTGRES, "host": "h"}}})
    project.write_secrets({"databases": {"default": {"password": "pw"}}})
    config = project.load(
        {"DBCONFIG_DEFAULT_USER": "u", "DATABASE_URL": "postgresql://x@y/app"},
        overrides={"databases.default.application_name": "svc"},
    )
    sources = {row.key: row.source for row in config.explain("default")}
    assert sources == {
        "url": "DATABASE_URL",
        "backend": "DATABASE_URL",
        "host": "DATABASE_URL",
        "port": "default",
        "name": "DATABASE_URL",
        "user": "DBCONFIG_DEFAULT_USER",
        "conn_max_age": "default",
        "conn_health_checks": "default",
        "connect_timeout": "default",
        "network_timeout": "default",
        "pool": "default",
        "application_name": "override: databases.default.application_name",
    }


def test_build_databases_passes_its_file_secrets_and_profile_arguments_on(tmp_path: Path) -> None:
    from django_dbconfig import build_databases

    config_file = tmp_path / "conf" / "db.json"
    config_file.parent.mkdir()
    config_file.write_text(
        '{"databases": {"default": {"backend": "postgresql", "name": "app"}},'
        ' "environments": {"staging": {"databases": {"default": {"host": "staging.internal"}}}}}'
    )
    secrets = tmp_path / "vault"
    secrets.mkdir()
    (secrets / "dbconfig.json").write_text('{"databases": {"default": {"password": "pw"}}}')
    built = build_databases(
        tmp_path, config_file=config_file, secrets_dir=secrets, environ={}, environment="staging"
    )
    assert (built["default"]["NAME"], built["default"]["HOST"], built["default"]["PASSWORD"]) == (
        "app",
        "staging.internal",
        "pw",
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"environment": "staging", "environ": {}},
            'environment=: unknown environment "staging". No environments are defined. '
            "Add environments.staging to dbconfig.json, or fix environment=.",
        ),
        (
            {"environ": {"DBCONFIG_ENV": "staging"}},
            'DBCONFIG_ENV: unknown environment "staging". No environments are defined. '
            "Add environments.staging to dbconfig.json, or fix DBCONFIG_ENV.",
        ),
    ],
)
def test_an_unknown_profile_without_any_profile_says_so_and_names_where_it_was_asked(
    tmp_path: Path, arguments: dict[str, Any], message: str
) -> None:
    from django_dbconfig import DbConfigError

    with pytest.raises(DbConfigError) as caught:
        load_config(tmp_path, **arguments)
    assert str(caught.value) == message


def test_an_unknown_alias_asked_of_the_config_names_the_known_ones(project: Any) -> None:
    project.write_config({"databases": {"default": POSTGRES, "analytics": POSTGRES}})
    with pytest.raises(DbConfigError) as caught:
        project.load().explain("analytisc")
    assert str(caught.value) == (
        'There is no alias "analytisc". Known aliases: "default" or "analytics". Did you mean "analytics"?'
    )


def test_a_migrate_password_is_masked_and_its_user_shown(project: Any) -> None:
    project.write_config(
        {"databases": {"default": {**POSTGRES, "migrate": {"user": "owner", "password": "s3cret"}}}}
    )
    rows = {key: value for key, value in project.values().items() if key.startswith("migrate")}
    assert rows == {"migrate.password": "********", "migrate.user": "owner"}


def test_mysql_driver_options_stay_used_when_another_layer_chooses_mariadb(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": POSTGRES,
                "analytics": {"backend": "mysql", "name": "a", "options": {"charset": "utf8mb4"}},
            }
        }
    )
    config = project.load({"DBCONFIG_ANALYTICS_BACKEND": "mariadb", "DBCONFIG_ANALYTICS_NAME": "a"})
    assert config.databases()["analytics"]["OPTIONS"]["charset"] == "utf8mb4"
    assert config.unused("analytics") == ()


def test_explain_lists_keys_in_the_order_of_the_keys_table_dotted_ones_under_their_root(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {
                    "backend": "postgresql",
                    "host": "db",
                    "name": "app",
                    "network_timeout": "5s",
                    "test": {"NAME": "t"},
                    "migrate": {"user": "owner"},
                    "options": {"gssencmode": "disable"},
                }
            }
        }
    )
    assert [row.key for row in project.load().explain("default")] == [
        "backend",
        "host",
        "port",
        "name",
        "conn_max_age",
        "conn_health_checks",
        "pool",
        "connect_timeout",
        "test.NAME",
        "options.gssencmode",
        "migrate.user",
        "network_timeout",
    ]


@pytest.mark.parametrize(
    ("document", "backend", "kept"),
    [
        # Set where the file chose MySQL: a later layer's PostgreSQL does not take them.
        (
            {"backend": "mysql", "host": "db", "options": {"isolation_level": "read committed"}},
            "postgresql",
            False,
        ),
        # The same family: they still apply.
        (
            {"backend": "mysql", "host": "db", "options": {"isolation_level": "read committed"}},
            "mariadb",
            True,
        ),
        # Set under the built-in default backend: they follow the backend a layer chooses.
        ({"options": {"isolation_level": "read committed"}}, "postgresql", True),
    ],
)
def test_options_stay_with_the_backend_chosen_where_they_are_set(
    project: Any, document: dict[str, Any], backend: str, kept: bool
) -> None:
    project.write_config({"databases": {"default": {"name": "app", **document}}})
    config = project.load({"DBCONFIG_DEFAULT_BACKEND": backend, "DBCONFIG_DEFAULT_NAME": "app"})
    unused = [(row.key, row.source) for row in config.unused("default")]
    assert ("isolation_level" in config.databases()["default"]["OPTIONS"], unused) == (
        (True, [])
        if kept
        else (
            False,
            [("options.isolation_level", "dbconfig.json: databases.default.options.isolation_level")],
        )
    )


def test_options_of_defaults_apply_to_the_backend_a_later_layer_chooses(project: Any) -> None:
    project.write_config(
        {
            "defaults": {"options": {"isolation_level": 1}},
            "databases": {"default": {"backend": "mysql", "name": "app", "host": "db"}},
        }
    )
    config = project.load({"DBCONFIG_DEFAULT_BACKEND": "postgresql", "DBCONFIG_DEFAULT_NAME": "app"})
    assert config.databases()["default"]["OPTIONS"]["isolation_level"] == 1


@pytest.mark.parametrize(
    "databases",
    [
        {"analytics": {"backend": "sqlite", "name": "a"}, "default": {"backend": "sqlite", "name": "d"}},
        {"analytics": {"backend": "sqlite", "name": "a"}},
    ],
)
def test_default_comes_first_and_always_exists(project: Any, databases: dict[str, Any]) -> None:
    project.write_config({"databases": databases})
    assert list(project.databases()) == ["default", "analytics"]


def test_dotted_keys_and_objects_meet_in_one_object(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {
                    "backend": "postgresql",
                    "name": "app",
                    "options.sslmode": "disable",
                    "options": {"application_name": "web"},
                    "options.gssencmode": "disable",
                }
            }
        }
    )
    options = project.databases()["default"]["OPTIONS"]
    assert (options["sslmode"], options["application_name"], options["gssencmode"]) == (
        "disable",
        "web",
        "disable",
    )


def test_a_value_built_from_several_variables_names_each(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {"backend": "postgresql", "name": "app", "application_name": "${APP}-${TIER}"}
            }
        }
    )
    rows = {
        row.key: (row.value, row.source)
        for row in project.load({"APP": "shop", "TIER": "web"}).explain("default")
    }
    assert rows["application_name"] == (
        "shop-web",
        "APP, TIER (referenced in dbconfig.json: databases.default.application_name)",
    )


def test_overrides_are_taken_as_written_without_references(project: Any) -> None:
    config = project.load(
        {"APP": "shop"},
        overrides={
            "databases": {"default": {"backend": "postgresql", "name": "a", "application_name": "${APP}"}}
        },
    )
    assert config.databases()["default"]["OPTIONS"]["application_name"] == "${APP}"


def test_a_null_password_unsets_the_lower_ones_and_only_that(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {
                    "backend": "postgresql",
                    "name": "app",
                    "password": "pw",
                    "application_name": "web",
                }
            }
        }
    )
    settings = project.databases(overrides={"databases": {"default": {"password": None}}})["default"]
    assert ("PASSWORD" in settings, settings["OPTIONS"]["application_name"]) == (False, "web")


def test_defaults_may_refer_to_variables_too(project: Any) -> None:
    project.write_config(
        {
            "defaults": {"application_name": "${APP}"},
            "databases": {"default": {"backend": "postgresql", "name": "app"}},
        }
    )
    assert project.databases({"APP": "shop"})["default"]["OPTIONS"]["application_name"] == "shop"


def test_dotted_top_level_keys_read_as_their_objects(project: Any) -> None:
    project.write_config(
        {
            "defaults.port": 6543,
            "databases.default": {"backend": "postgresql", "name": "app"},
            "databases.default.options.sslmode": "disable",
            "routes.shop.Order": "default",
        }
    )
    config = project.load()
    settings = config.databases()["default"]
    assert (settings["PORT"], settings["OPTIONS"]["sslmode"]) == (6543, "disable")
    assert {row.key: row.source for row in config.explain("default")}["options.sslmode"] == (
        "dbconfig.json: databases.default.options.sslmode"
    )


def test_a_top_level_key_that_is_no_string_is_refused(project: Any) -> None:
    with pytest.raises(DbConfigError) as caught:
        project.load(overrides={1: "x"})
    assert str(caught.value) == "override: keys must be strings."


def test_variables_of_other_programs_around_ours_are_skipped(project: Any) -> None:
    project.write_config({"databases": {"default": {"backend": "sqlite", "name": "d"}}})
    databases = project.databases(
        {
            "AAA": "1",
            "DATABASE_URL": "postgresql://h/app",
            "DBCONFIG_A_HOST": "",  # empty: unset
            "DBCONFIG_DEFAULT_USER": "u",
            "DBCONFIG_FILE": str(project.root / "dbconfig.json"),  # read by load_config itself
            "DBCONFIG_REPORTS_URL": "postgresql://r/reports",
            "ZZZ": "1",
        }
    )
    assert (databases["default"]["HOST"], databases["default"]["USER"], databases["reports"]["HOST"]) == (
        "h",
        "u",
        "r",
    )


def test_database_url_file_is_read(project: Any) -> None:
    (project.root / "url").write_text("postgresql://h/app\n")
    assert project.databases({"DATABASE_URL_FILE": str(project.root / "url")})["default"]["HOST"] == "h"


def test_the_built_in_layer_is_the_source_of_the_sqlite_default(project: Any) -> None:
    assert project.sources() == {"backend": "default", "name": "default", "conn_max_age": "default"}


def test_a_secrets_key_the_backend_from_the_environment_cannot_use_is_unused(project: Any) -> None:
    # Ignored, not refused: the environment's layer chose the backend, not the secrets file's.
    project.write_secrets({"databases": {"default": {"user": "app"}}})
    config = project.load({"DBCONFIG_DEFAULT_BACKEND": "sqlite"})
    assert [(row.key, row.source) for row in config.unused("default")] == [
        ("user", ".secrets/dbconfig.json: databases.default.user")
    ]


def test_an_environment_key_the_backend_from_an_override_cannot_use_is_unused(project: Any) -> None:
    config = project.load(
        {"DBCONFIG_DEFAULT_USER": "app"}, overrides={"databases": {"default": {"backend": "sqlite"}}}
    )
    assert [(row.key, row.source) for row in config.unused("default")] == [("user", "DBCONFIG_DEFAULT_USER")]


def test_variables_after_a_url_variable_of_no_plausible_alias_are_read(project: Any) -> None:
    # 1X_DATABASE_URL is another program's, and sorts before DBCONFIG_DEFAULT_NAME.
    environ = {"1X_DATABASE_URL": "sqlite:///other.sqlite3", "DBCONFIG_DEFAULT_NAME": "app.sqlite3"}
    assert project.databases(environ)["default"]["NAME"] == str(project.root / "app.sqlite3")


def test_variables_after_a_migrate_variable_are_read(project: Any) -> None:
    environ = {
        "DBCONFIG_DEFAULT_BACKEND": "postgresql",
        "DBCONFIG_DEFAULT_MIGRATE_USER": "owner",
        "DBCONFIG_DEFAULT_NAME": "app",
    }
    sources = project.sources(environ=environ)
    assert (sources["name"], sources["migrate.user"]) == (
        "DBCONFIG_DEFAULT_NAME",
        "DBCONFIG_DEFAULT_MIGRATE_USER",
    )


def test_the_secrets_profile_overlays_the_secrets_file_keeping_its_defaults_routes_and_aliases(
    project: Any,
) -> None:
    project.write_config(
        {"databases": {"default": POSTGRES, "reports": POSTGRES}, "environments": {"prod": {}}}
    )
    project.write_secrets(
        {
            "defaults": {"connect_timeout": 7},
            "routes": {"billing": "reports"},
            "databases": {"default": {"password": "base-pw"}},
            "environments": {
                "prod": {
                    "defaults": {"conn_max_age": 30},
                    "routes": {"events": "reports"},
                    "databases": {"reports": {"password": "reports-pw"}},
                }
            },
        }
    )
    config = project.load(environment="prod")
    databases = config.databases()
    assert databases["default"]["PASSWORD"] == "base-pw"
    assert databases["reports"]["PASSWORD"] == "reports-pw"
    assert databases["default"]["OPTIONS"]["connect_timeout"] == 7
    assert databases["reports"]["CONN_MAX_AGE"] == 30
    assert dict(config.routes) == {"billing": "reports", "events": "reports"}
    assert project.sources("reports", environment="prod")["password"] == (
        ".secrets/dbconfig.json: environments.prod.databases.reports.password"
    )
