"""manage.py dbconfig --export: an existing DATABASES as dbconfig.json plus .secrets/dbconfig.json.

The round trips are checked twice: the rendered dict, and what the real servers
report for a connection made with each (session settings, character set).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from django_dbconfig import DbConfigError, load_config
from django_dbconfig.operations.export import export_databases
from tests.conftest import django_connection, query_one
from tests.helpers import needs_django_pool

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"


def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DBCONFIG_") and not k.endswith("DATABASE_URL") and k != "DJANGO_SETTINGS_MODULE"
    }
    environ["PYTHONPATH"] = os.pathsep.join([str(cwd), str(ROOT)])
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def rendered(folder: Path) -> dict[str, Any]:
    """What build_databases(folder) returns once the exported files are in place."""
    return dict(load_config(folder, environ={}).databases())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------- the example project


@pytest.fixture
def example(tmp_path: Path) -> Path:
    copy = tmp_path / "example_project"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("*.sqlite3", "__pycache__"))
    return copy


def test_example_project_round_trips_on_sqlite(example: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    result = run(example, "manage.py", "dbconfig", "--export", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"Wrote {out / 'dbconfig.json'}"
    assert not (out / ".secrets").exists()  # no alias has a secret
    assert rendered(out) == dict(load_config(example, environ={}).databases())


def test_example_production_profile_round_trips_with_its_password_kept_apart(
    example: Path, tmp_path: Path
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    env = {"DBCONFIG_ENV": "production", "DBCONFIG_DEFAULT_PASSWORD": password}
    out = tmp_path / "exported"
    result = run(example, "manage.py", "dbconfig", "--export", "--output-dir", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr

    original = dict(load_config(example, environ=env).databases())
    assert rendered(out) == original
    assert original["default"]["OPTIONS"]["options"].startswith('-c search_path="shop","public"')

    config_text = (out / "dbconfig.json").read_text()
    assert password not in config_text
    assert json.loads(config_text)["databases"]["default"]["search_path"] == ["shop", "public"]
    secrets = out / ".secrets" / "dbconfig.json"
    # The replica inherits the primary's password (replica_of): its entry carries it too.
    assert json.loads(secrets.read_text()) == {
        "databases": {"default": {"password": password}, "replica": {"password": password}}
    }
    assert mode(secrets) == 0o600
    assert mode(secrets.parent) == 0o700


def test_export_refuses_to_overwrite_and_changes_nothing(example: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    (out / ".secrets").mkdir(parents=True)
    (out / ".secrets" / "dbconfig.json").write_text("{}")
    env = {"DBCONFIG_ENV": "production", "DBCONFIG_DEFAULT_PASSWORD": "x"}
    refused = run(example, "manage.py", "dbconfig", "--export", "--output-dir", str(out), env=env)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"CommandError: {out / '.secrets' / 'dbconfig.json'} already exists: the export never "
        "overwrites. Move the file away, or choose another folder with --output-dir."
    )
    assert not (out / "dbconfig.json").exists()  # nothing half-written
    assert (out / ".secrets" / "dbconfig.json").read_text() == "{}"


# ------------------------------------------- a hand-written PostgreSQL + MariaDB + SQLite project

LEGACY_SETTINGS = """
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "tests-only"
INSTALLED_APPS = ["django.contrib.contenttypes", "django_dbconfig"]
DATABASES = {databases}
"""


@pytest.fixture
def mariadb_account(shared_mariadb: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """A MariaDB user with a password, on the `test` database; dropped afterwards."""
    import MySQLdb

    user, password = f"exp_{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    admin = MySQLdb.connect(**shared_mariadb)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
            cursor.execute(f"GRANT ALL ON test.* TO '{user}'@'%'")
        yield user, password
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        admin.close()


@pytest.mark.postgresql
@pytest.mark.mariadb
def test_hand_written_databases_round_trip_on_the_real_servers(
    tmp_path: Path,
    shared_postgres: dict[str, Any],
    shared_mariadb: dict[str, Any],
    mariadb_account: tuple[str, str],
) -> None:
    pg_password = f"pg-{uuid.uuid4().hex}"  # trust auth accepts it; it must still stay secret
    maria_user, maria_password = mariadb_account
    schema = f"exp_{uuid.uuid4().hex[:8]}"
    databases: dict[str, Any] = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "test",
            "USER": "postgres",
            "PASSWORD": pg_password,
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {
                "options": f"-c search_path={schema},public -c statement_timeout=30000 -c work_mem=8MB",
                "application_name": "legacy-web",
                "sslmode": "prefer",
                "connect_timeout": 10,
            },
            "TEST": {"NAME": "test_legacy"},
        },
        "warehouse": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": "test",
            "USER": maria_user,
            "PASSWORD": maria_password,
            "HOST": "127.0.0.1",
            "PORT": 3306,
            "OPTIONS": {"init_command": "SET SESSION max_statement_time=7", "charset": "utf8mb4"},
            "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
        },
        "local": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(tmp_path / "legacy" / "local.sqlite3"),
            "ATOMIC_REQUESTS": True,
            "OPTIONS": {"timeout": 20, "cached_statements": 64},
        },
    }
    project = tmp_path / "legacy"
    project.mkdir()
    (project / "legacy_settings.py").write_text(
        textwrap.dedent(LEGACY_SETTINGS).format(databases=repr(databases))
    )
    result = run(
        project, "-m", "django", "dbconfig", "--export", env={"DJANGO_SETTINGS_MODULE": "legacy_settings"}
    )
    assert result.returncode == 0, result.stderr
    assert pg_password not in result.stdout + result.stderr
    assert maria_password not in result.stdout + result.stderr
    assert "default, warehouse used Django's own engine: build_databases() gives them" in result.stdout

    # Written into BASE_DIR: the SQLite file is relative to it; the search path became a key.
    document = json.loads((project / "dbconfig.json").read_text())
    assert document["databases"]["default"] == {
        "backend": "postgresql",
        "host": "127.0.0.1",
        "port": 5432,
        "name": "test",
        "user": "postgres",
        "sslmode": "prefer",
        "search_path": [schema, "public"],
        "statement_timeout": "30s",
        "connect_timeout": "10s",
        "application_name": "legacy-web",
        "network_timeout": None,  # no keepalives in the hand-written settings
        "pool": False,  # Django's engine has no pool for ASGI requests
        "options": {"options": "-c work_mem=8MB"},
        "test": {"NAME": "test_legacy"},
    }
    assert document["databases"]["warehouse"]["backend"] == "mariadb"  # asked the server
    assert document["databases"]["warehouse"]["connect_timeout"] is None
    assert document["databases"]["local"] == {
        "backend": "sqlite",
        "name": "local.sqlite3",
        "lock_timeout": "20s",
        "atomic_requests": True,
        "options": {"cached_statements": 64},
    }
    text = (project / "dbconfig.json").read_text()
    assert pg_password not in text
    assert maria_password not in text
    secrets = project / ".secrets" / "dbconfig.json"
    assert mode(secrets) == 0o600
    assert json.loads(secrets.read_text()) == {
        "databases": {"default": {"password": pg_password}, "warehouse": {"password": maria_password}}
    }

    after = rendered(project)
    # The same dict, key by key; the libpq options string is written in django-dbconfig's form.
    expected = {alias: dict(settings) for alias, settings in databases.items()}
    expected["default"]["PORT"] = 5432
    expected["default"]["OPTIONS"] = {
        **databases["default"]["OPTIONS"],
        "options": f'-c search_path="{schema}","public" -c statement_timeout=30000ms -c work_mem=8MB',
    }
    # Django's defaults, written out where django-dbconfig's own differ.
    expected["warehouse"].update(CONN_MAX_AGE=0, CONN_HEALTH_CHECKS=False)
    expected["local"]["CONN_MAX_AGE"] = 0
    # Django's own engines become django-dbconfig's of the same family (subclasses of them).
    expected["default"]["ENGINE"] = "django_dbconfig.backends.postgresql"
    expected["warehouse"]["ENGINE"] = "django_dbconfig.backends.mysql"
    assert after == expected

    # What the servers report is the same through both.
    def postgres_session(settings: dict[str, Any]) -> tuple[Any, ...]:
        with django_connection(settings) as connection:
            return (
                # The schemas in effect (SHOW would echo the text as written, quotes and all).
                query_one(connection, "SELECT current_schemas(false)::text"),
                *(
                    query_one(connection, f"SHOW {name}")
                    for name in ("statement_timeout", "work_mem", "application_name")
                ),
            )

    def mariadb_session(settings: dict[str, Any]) -> tuple[Any, ...]:
        with django_connection(settings) as connection:
            return tuple(
                query_one(connection, f"SELECT {name}")
                for name in ("@@max_statement_time", "@@character_set_connection", "CURRENT_USER()")
            )

    import psycopg

    with psycopg.connect(**shared_postgres, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            assert postgres_session(after["default"]) == postgres_session(databases["default"])
            assert postgres_session(after["default"])[:3] == (f"{{{schema},public}}", "30s", "8MB")
        finally:
            admin.execute(f'DROP SCHEMA "{schema}"')
    assert mariadb_session(after["warehouse"]) == mariadb_session(databases["warehouse"])
    assert mariadb_session(after["warehouse"])[0] == 7


# ------------------------------------------------------------------------ unit: the mapping


def export(databases: dict[str, Any], backends: dict[str, str], base_dir: Path) -> dict[str, Any]:
    return export_databases(databases, backends=backends, base_dir=base_dir).config["databases"]


def test_what_does_not_map_cleanly_stays_verbatim(tmp_path: Path) -> None:
    databases = {
        "default": {
            "ENGINE": "django_dbconfig.engines.postgresql",
            "NAME": "app",
            "OPTIONS": {
                # -e is not a -c switch: the whole string is kept as written.
                "options": "-c search_path=app -e",
                "sslrootcert": "certs/ca.pem",  # relative to the process, not to base_dir
                "sslcert": str(tmp_path / "client.pem"),
                "connect_timeout": 1,  # libpq's minimum is 2: django-dbconfig would write 2
            },
        },
        "mysql": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": "app",
            "OPTIONS": {"ssl_mode": "REQUIRED", "ssl": {"ca": "/etc/ssl/ca.pem"}},
        },
    }
    keys = export(databases, {"default": "postgresql", "mysql": "mysql"}, tmp_path)
    assert keys["default"] == {
        "backend": "postgresql",
        "name": "app",
        "sslcert": "client.pem",
        "connect_timeout": None,  # the 1 in options is what the driver gets
        "network_timeout": None,
        "pool": False,
        "conn_max_age": 0,
        "conn_health_checks": False,
        "options": {"options": "-c search_path=app -e", "sslrootcert": "certs/ca.pem", "connect_timeout": 1},
    }
    # REQUIRED as sslmode would add the TLS guard to init_command: kept as written.
    assert keys["mysql"] == {
        "backend": "mysql",
        "name": "app",
        "sslrootcert": "/etc/ssl/ca.pem",
        "connect_timeout": None,
        "network_timeout": None,
        "conn_max_age": 0,
        "conn_health_checks": False,
        "options": {"ssl_mode": "REQUIRED"},
    }


def test_secret_options_go_to_the_secrets_document(tmp_path: Path) -> None:
    databases = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "app",
            "PASSWORD": "pw",
            "OPTIONS": {"sslpassword": "key-pass", "sslmode": "require"},
        }
    }
    result = export_databases(databases, backends={"default": "postgresql"}, base_dir=tmp_path)
    assert "key-pass" not in json.dumps(result.config)
    assert result.secrets == {
        "databases": {"default": {"password": "pw", "options": {"sslpassword": "key-pass"}}}
    }


def test_values_json_cannot_hold_are_refused_by_name(tmp_path: Path) -> None:
    databases = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": ":memory:",
            "OPTIONS": {"factory": object},
        }
    }
    with pytest.raises(DbConfigError) as caught:
        export(databases, {"default": "sqlite"}, tmp_path)
    assert str(caught.value) == (
        'DATABASES["default"]["OPTIONS"]["factory"] holds a type, which JSON cannot hold. '
        "Set it in settings.py after build_databases(), then export the rest."
    )


def test_unknown_settings_keys_are_refused_by_name(tmp_path: Path) -> None:
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:", "SCHEMA": "x"}}
    with pytest.raises(DbConfigError) as caught:
        export(databases, {"default": "sqlite"}, tmp_path)
    assert str(caught.value) == (
        'DATABASES["default"]: SCHEMA cannot be written in dbconfig.json. Set them in settings.py '
        "after build_databases(), then export the rest."
    )
    with pytest.raises(DbConfigError) as caught:
        export({"default": {**databases["default"], "ROUTER": 1}}, {"default": "sqlite"}, tmp_path)
    assert str(caught.value).startswith(
        'DATABASES["default"]: ROUTER, SCHEMA cannot be written in dbconfig.json.'
    )


@needs_django_pool
def test_a_pool_exports_without_conn_max_age_which_the_pool_sets(tmp_path: Path) -> None:
    databases = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "app",
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {"pool": True},
        }
    }
    assert export(databases, {"default": "postgresql"}, tmp_path)["default"] == {
        "backend": "postgresql",
        "name": "app",
        "pool": True,
        "connect_timeout": None,
        "network_timeout": None,
    }


def test_connect_timeout_null_leaves_the_driver_default(project: Any) -> None:
    project.write_config(
        {"databases": {"default": {"backend": "postgresql", "name": "app", "connect_timeout": None}}}
    )
    settings = project.databases()["default"]
    assert "connect_timeout" not in settings.get("OPTIONS", {})
    env = project.databases(environ={"DBCONFIG_DEFAULT_CONNECT_TIMEOUT": "null"})["default"]
    assert "connect_timeout" not in env.get("OPTIONS", {})
    assert project.load().values("default")["connect_timeout"] is None
    assert project.values()["connect_timeout"] == "null"  # as manage.py dbconfig shows it


def test_an_export_that_would_render_differently_is_refused_before_writing(tmp_path: Path) -> None:
    # A relative SQLite NAME is relative to the process's directory; build_databases() reads
    # it relative to base_dir. The check renders the export and names the difference.
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
    with pytest.raises(DbConfigError) as caught:
        export(databases, {"default": "sqlite"}, tmp_path)
    assert str(caught.value) == (
        'DATABASES["default"]: the export would render NAME differently. A relative path is read '
        "relative to the output folder by build_databases(): make it absolute in settings.py. "
        "Otherwise write this alias in dbconfig.json by hand."
    )


def test_a_built_config_behind_a_pooler_with_a_provider_round_trips(project: Any) -> None:
    # DATABASES that build_databases() made carries what the engines read in DBCONFIG.
    project.write_config(
        {
            "databases": {
                "default": {
                    "backend": "postgresql",
                    "name": "app",
                    "pooler": "transaction",
                    "search_path": ["App", "public"],
                    "statement_timeout": "30s",
                    "read_only": True,
                    "password_provider": "myproject.db.token",
                }
            }
        }
    )
    databases = project.databases()
    assert databases["default"]["DBCONFIG"]["pooler"] == "transaction"
    keys = export(databases, {"default": "postgresql"}, project.root)["default"]
    assert {
        k: keys[k]
        for k in (
            "pooler",
            "password_provider",
            "search_path",
            "statement_timeout",
            "read_only",
            "network_timeout",
        )
    } == {
        "pooler": "transaction",
        "password_provider": "myproject.db.token",
        "search_path": ["App", "public"],
        "statement_timeout": "30s",
        "read_only": True,
        "network_timeout": "30s",  # the keepalives it rendered, read back as the key
    }


def test_every_key_rendered_from_options_and_session_settings_reads_back_as_written(tmp_path: Path) -> None:
    # Config -> DATABASES -> export gives back the keys that were written (defaults aside):
    # each family reads its own OPTIONS, startup options and paths back into keys.
    written = {
        "pg": {
            "backend": "postgresql",
            "host": "db",
            "port": 5433,
            "name": "app",
            "user": "u",
            "conn_max_age": 120,
            "sslmode": "verify-full",
            "sslrootcert": "certs/ca.pem",
            "search_path": ["App", "public"],
            "statement_timeout": "30s",
            "lock_timeout": "500ms",
            "idle_in_transaction_session_timeout": "1min",
            "connect_timeout": "10s",
            "application_name": "shop",
            "read_only": True,
            "network_timeout": "45s",
        },
        "lite": {
            "backend": "sqlite",
            "name": "data/app.sqlite3",
            "conn_max_age": 30,
            "lock_timeout": "2500ms",
        },
        "mem": {"backend": "sqlite", "name": ":memory:"},
        "my": {
            "backend": "mysql",
            "host": "db",
            "name": "app",
            "sslrootcert": "certs/ca.pem",
            "sslcert": "certs/c.pem",
            "sslkey": "certs/k.pem",
            "connect_timeout": "7s",
            "read_only": True,
        },
    }
    config = load_config(tmp_path, environ={}, overrides={"databases": written})
    databases = {alias: config.databases()[alias] for alias in written}
    keys = export(databases, {alias: str(written[alias]["backend"]) for alias in written}, tmp_path)
    assert {alias: keys[alias] for alias in ("pg", "lite", "mem")} == {
        alias: written[alias] for alias in ("pg", "lite", "mem")
    }
    assert list(keys["pg"]) == list(written["pg"])  # in the order of the keys' table
    # MySQL's init_command (read_only) is kept verbatim; the rest are keys, defaults written out.
    assert keys["my"] == {
        **{key: value for key, value in written["my"].items() if key != "read_only"},
        "port": 3306,
        "network_timeout": "30s",
        "options": {"init_command": "SET SESSION transaction_read_only=1"},
    }


def test_write_export_writes_both_documents_with_their_modes_and_never_overwrites(tmp_path: Path) -> None:
    from django_dbconfig.operations.export import Export, write_export

    document = Export(
        {"databases": {"default": {"backend": "sqlite"}}}, {"databases": {"default": {"password": "pw"}}}
    )
    out = tmp_path / "new" / "folder"
    assert write_export(document, out) == [out / "dbconfig.json", out / ".secrets" / "dbconfig.json"]
    assert (out / "dbconfig.json").read_text() == json.dumps(document.config, indent=2) + "\n"
    assert json.loads((out / ".secrets" / "dbconfig.json").read_text()) == document.secrets
    modes = [
        stat.S_IMODE(path.stat().st_mode)
        for path in (out / "dbconfig.json", out / ".secrets" / "dbconfig.json")
    ]
    assert modes == [0o644, 0o600]
    assert stat.S_IMODE((out / ".secrets").stat().st_mode) & 0o077 == 0
    with pytest.raises(DbConfigError) as caught:
        write_export(document, out)
    assert str(caught.value) == (
        f"{out / 'dbconfig.json'} and {out / '.secrets' / 'dbconfig.json'} already exist: the export "
        "never overwrites. Move the file away, or choose another folder with --output-dir."
    )
    # A .secrets folder that is already there is used as it is.
    again = tmp_path / "again"
    (again / ".secrets").mkdir(parents=True)
    assert write_export(document, again)[1].read_text() == json.dumps(document.secrets, indent=2) + "\n"
    # Without secrets, only dbconfig.json is written, and only it has to be new.
    plain = tmp_path / "plain"
    (plain / ".secrets").mkdir(parents=True)
    (plain / ".secrets" / "dbconfig.json").write_text("{}")
    assert write_export(Export(document.config, {}), plain) == [plain / "dbconfig.json"]
    assert (plain / ".secrets" / "dbconfig.json").read_text() == "{}"
    with pytest.raises(DbConfigError) as caught:
        write_export(Export(document.config, {}), plain)
    assert str(caught.value).startswith(
        f"{plain / 'dbconfig.json'} already exists: the export never overwrites."
    )


@pytest.mark.parametrize(
    ("backend", "options", "keys", "verbatim"),
    [
        # MySQL: a whole number of seconds, the two weakest ssl_modes, ssl paths of base_dir.
        ("mysql", {"connect_timeout": 7}, {"connect_timeout": "7s"}, {}),
        ("mysql", {"connect_timeout": 0}, {}, {"connect_timeout": 0}),
        ("mysql", {"connect_timeout": 1}, {"connect_timeout": "1s"}, {}),
        ("mysql", {"ssl": "yes"}, {}, {"ssl": "yes"}),
        ("mysql", {"connect_timeout": True}, {}, {"connect_timeout": True}),
        ("mysql", {"connect_timeout": "7"}, {}, {"connect_timeout": "7"}),
        ("mysql", {"ssl_mode": "DISABLED"}, {"sslmode": "disable"}, {}),
        ("mysql", {"ssl_mode": "PREFERRED"}, {"sslmode": "prefer"}, {}),
        ("mysql", {"ssl_mode": "VERIFY_IDENTITY"}, {}, {"ssl_mode": "VERIFY_IDENTITY"}),
        (
            "mysql",
            {"ssl": {"ca": "{base}/ca.pem", "cert": "{base}/c.pem", "key": "/etc/k.pem"}},
            {"sslrootcert": "ca.pem", "sslcert": "c.pem", "sslkey": "/etc/k.pem"},
            {},
        ),
        ("mysql", {"ssl": {"ca": "ca.pem"}}, {}, {"ssl": {"ca": "ca.pem"}}),  # relative to the process
        ("mysql", {"ssl": {"ca": "/ca.pem", "cipher": "X"}}, {}, {"ssl": {"ca": "/ca.pem", "cipher": "X"}}),
        ("mysql", {"ssl": {}}, {}, {"ssl": {}}),
        ("mysql", {"charset": "utf8mb4"}, {}, {"charset": "utf8mb4"}),
        # PostgreSQL: libpq's names; a connect_timeout below libpq's minimum of 2 stays as written.
        ("postgresql", {"sslmode": "verify-ca", "sslmode_x": 1}, {"sslmode": "verify-ca"}, {"sslmode_x": 1}),
        ("postgresql", {"sslmode": "strict"}, {}, {"sslmode": "strict"}),
        (
            "postgresql",
            {"sslkey": "{base}/k.pem", "sslcert": "c.pem"},
            {"sslkey": "k.pem"},
            {"sslcert": "c.pem"},
        ),
        ("postgresql", {"application_name": "shop"}, {"application_name": "shop"}, {}),
        ("postgresql", {"application_name": " "}, {}, {"application_name": " "}),
        ("postgresql", {"connect_timeout": 2}, {"connect_timeout": "2s"}, {}),
        ("postgresql", {"connect_timeout": 1}, {}, {"connect_timeout": 1}),
        ("postgresql", {"pool": True}, {"pool": True}, {}),
        ("postgresql", {"pool": {"min_size": 2}}, {"pool": {"min_size": 2}}, {}),
        ("postgresql", {"pool": False}, {}, {"pool": False}),
        (
            "postgresql",
            {"options": "-c lock_timeout=2s -c work_mem=64MB"},
            {"lock_timeout": "2s"},
            {"options": "-c work_mem=64MB"},
        ),
        ("postgresql", {"options": "-c a=1 -c a=2"}, {}, {"options": "-c a=1 -c a=2"}),
        ("postgresql", {"options": "-c lock_timeout=2s"}, {"lock_timeout": "2s"}, {}),
        ("postgresql", {"options": "-c a=1 -c b=2"}, {}, {"options": "-c a=1 -c b=2"}),
        (
            "postgresql",
            {
                "keepalives": 1,
                "keepalives_idle": 1,
                "keepalives_interval": 1,
                "keepalives_count": 3,
                "tcp_user_timeout": 1000,
            },
            {"network_timeout": "1s"},
            {},
        ),
        (
            "postgresql",
            {
                "keepalives": 1,
                "keepalives_idle": 22,
                "keepalives_interval": 7,
                "keepalives_count": 3,
                "tcp_user_timeout": 45000,
            },
            {"network_timeout": "45s"},
            {},
        ),
        (  # not what network_timeout renders: kept as written
            "postgresql",
            {
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 7,
                "keepalives_count": 3,
                "tcp_user_timeout": 45000,
            },
            {},
            {
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 7,
                "keepalives_count": 3,
                "tcp_user_timeout": 45000,
            },
        ),
        ("postgresql", {"tcp_user_timeout": 999}, {}, {"tcp_user_timeout": 999}),
        # SQLite: sqlite3.connect's timeout in seconds is the lock timeout, in whole milliseconds.
        ("sqlite", {"timeout": 2.5}, {"lock_timeout": "2500ms"}, {}),
        ("sqlite", {"timeout": 0}, {"lock_timeout": "0ms"}, {}),
        ("sqlite", {"timeout": 86400}, {"lock_timeout": "24h"}, {}),
        ("sqlite", {"timeout": 86401}, {}, {"timeout": 86401}),
        ("sqlite", {"timeout": -1}, {}, {"timeout": -1}),
        ("sqlite", {"timeout": 0.0005}, {}, {"timeout": 0.0005}),
        ("sqlite", {"timeout": True}, {}, {"timeout": True}),
        (
            "sqlite",
            {"timeout": "5", "check_same_thread": False},
            {},
            {"timeout": "5", "check_same_thread": False},
        ),
    ],
)
def test_each_familys_options_read_back_as_keys_or_stay_verbatim(
    tmp_path: Path, backend: str, options: dict[str, Any], keys: dict[str, Any], verbatim: dict[str, Any]
) -> None:
    from django_dbconfig.backends import BACKENDS

    def placed(value: Any) -> Any:
        if isinstance(value, dict):
            return {name: placed(item) for name, item in value.items()}
        return value.replace("{base}", str(tmp_path)) if isinstance(value, str) else value

    assert BACKENDS[backend].keys_from_options(placed(options), tmp_path) == (keys, placed(verbatim))


def test_a_port_that_is_no_number_is_refused_naming_the_alias(tmp_path: Path) -> None:
    databases = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "app", "PORT": "54x"}}
    with pytest.raises(DbConfigError) as caught:
        export(databases, {"default": "postgresql"}, tmp_path)
    assert str(caught.value) == 'DATABASES["default"]["PORT"]: expected a port number, got str.'


def test_sqlite_names_that_are_no_path_are_kept_as_written(tmp_path: Path) -> None:
    databases = {
        "memory": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        "uri": {"ENGINE": "django.db.backends.sqlite3", "NAME": "file:app?mode=memory&cache=shared"},
        "inside": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "data" / "app.db")},
        "outside": {"ENGINE": "django.db.backends.sqlite3", "NAME": "/var/lib/app.db"},
    }
    keys = export(databases, dict.fromkeys(databases, "sqlite"), tmp_path)
    assert (
        export_databases(databases, backends=dict.fromkeys(databases, "sqlite"), base_dir=tmp_path).secrets
        == {}
    )
    assert {alias: keys[alias]["name"] for alias in databases} == {
        "memory": ":memory:",
        "uri": "file:app?mode=memory&cache=shared",
        "inside": "data/app.db",
        "outside": "/var/lib/app.db",
    }


def test_a_server_database_name_is_kept_as_written_even_when_it_looks_like_a_path(tmp_path: Path) -> None:
    # Only SQLite's NAME is a file, written relative to base_dir; a server's is the database's name.
    name = str(tmp_path / "app")
    databases = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": name}}
    assert export(databases, {"default": "postgresql"}, tmp_path)["default"]["name"] == name


def test_a_third_party_engine_is_kept_beside_the_backend(tmp_path: Path) -> None:
    databases = {"default": {"ENGINE": "django_prometheus.db.backends.postgresql", "NAME": "app"}}
    keys = export(databases, {"default": "postgresql"}, tmp_path)["default"]
    assert (keys["backend"], keys["engine"]) == ("postgresql", "django_prometheus.db.backends.postgresql")


def test_libpq_failover_options_read_back_as_keys_and_an_unknown_value_stays_an_option(
    tmp_path: Path,
) -> None:
    databases = {
        "known": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "app",
            "HOST": "a,b",
            "OPTIONS": {"target_session_attrs": "read-write", "load_balance_hosts": "random"},
        },
        "unknown": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "app",
            "OPTIONS": {"target_session_attrs": "read-only-please"},
        },
    }
    keys = export(databases, dict.fromkeys(databases, "postgresql"), tmp_path)
    assert (keys["known"]["target_session_attrs"], keys["known"]["load_balance_hosts"]) == (
        "read-write",
        "random",
    )
    assert "options" not in keys["known"]
    assert keys["unknown"]["options"] == {"target_session_attrs": "read-only-please"}
    assert "target_session_attrs" not in keys["unknown"]


def test_test_entries_django_does_not_fill_in_are_kept_null_included(tmp_path: Path) -> None:
    databases = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "app",
            "TEST": {"NAME": "app_test", "TEMPLATE": None},
        }
    }
    keys = export(databases, {"default": "postgresql"}, tmp_path)["default"]
    assert keys["test"] == {"NAME": "app_test", "TEMPLATE": None}


def test_the_round_trip_check_ignores_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The export is checked against what the documents alone render, whatever the shell sets.
    monkeypatch.setenv("DBCONFIG_DEFAULT_HOST", "elsewhere")
    databases = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "app", "HOST": "db"}}
    assert export(databases, {"default": "postgresql"}, tmp_path)["default"]["host"] == "db"


def test_a_refused_export_names_every_setting_it_would_change(tmp_path: Path) -> None:
    # Behind a pooler: a session setting that is no key cannot be written, and the export's
    # pooler would turn server-side cursors off, a setting the original does not have at all.
    databases = {
        "default": {
            "ENGINE": "django_dbconfig.backends.postgresql",
            "NAME": "app",
            "DBCONFIG": {"pooler": "transaction", "session_settings": {"work_mem": "64MB"}},
        }
    }
    with pytest.raises(DbConfigError) as caught:
        export(databases, {"default": "postgresql"}, tmp_path)
    assert str(caught.value).startswith(
        'DATABASES["default"]: the export would render DBCONFIG, DISABLE_SERVER_SIDE_CURSORS differently.'
    )


def test_django_keys_export_where_they_differ_from_djangos_defaults(tmp_path: Path) -> None:
    databases = {
        "default": {
            "ENGINE": "django_dbconfig.engines.postgresql",  # the 0.1 path of the same engine
            "NAME": "app",
            "USER": "web",
            "PASSWORD": "pw",
            "HOST": "db",
            "PORT": "6432",
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
            "ATOMIC_REQUESTS": True,
            "AUTOCOMMIT": True,  # Django's default: not written
            "TIME_ZONE": "UTC",
            "DISABLE_SERVER_SIDE_CURSORS": True,
            "TEST": {"NAME": "test_app", "MIGRATE": True, "CHARSET": "UTF8", "PASSWORD": "tpw"},
        },
        "plain": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "app",
            "USER": "",
            "HOST": "",
            "PORT": "",
            "PASSWORD": "",
            "AUTOCOMMIT": False,
        },
    }
    result = export_databases(databases, backends=dict.fromkeys(databases, "postgresql"), base_dir=tmp_path)
    assert result.config["databases"] == {
        "default": {
            "backend": "postgresql",
            "host": "db",
            "port": 6432,
            "name": "app",
            "user": "web",
            "connect_timeout": None,
            "atomic_requests": True,
            "time_zone": "UTC",
            "disable_server_side_cursors": True,
            "test": {"NAME": "test_app", "CHARSET": "UTF8"},
            "network_timeout": None,
            "pool": False,
        },
        "plain": {
            "backend": "postgresql",
            "name": "app",
            "conn_max_age": 0,
            "conn_health_checks": False,
            "connect_timeout": None,
            "autocommit": False,
            "network_timeout": None,
            "pool": False,
        },
    }
    assert result.secrets == {"databases": {"default": {"password": "pw", "test": {"PASSWORD": "tpw"}}}}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"TEST": {"NAME": "t", "SERIALIZE": object()}},
            'DATABASES["default"]["TEST"]["SERIALIZE"] holds a object, which JSON cannot hold.',
        ),
        (
            {"OPTIONS": {"pool": {"configure": print}}},
            # The pool's own entry is named (under OPTIONS, where the pool object lives).
            'DATABASES["default"]["OPTIONS"]["configure"] holds a builtin_function_or_method, '
            "which JSON cannot hold.",
        ),
    ],
)
def test_test_and_pool_values_json_cannot_hold_are_refused_by_name(
    tmp_path: Path, entry: dict[str, Any], message: str
) -> None:
    databases = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "app", **entry}}
    with pytest.raises(DbConfigError) as caught:
        export(databases, {"default": "postgresql"}, tmp_path)
    assert (
        str(caught.value) == message + " Set it in settings.py after build_databases(), then export the rest."
    )


def test_entries_compare_by_what_django_and_the_driver_see() -> None:
    from django_dbconfig.backends import BACKENDS
    from django_dbconfig.operations.export import comparable

    postgresql, sqlite = BACKENDS["postgresql"], BACKENDS["sqlite"]
    entry = {
        "ENGINE": "django_dbconfig.engines.postgresql",
        "PORT": "",
        "OPTIONS": {"options": '-c search_path="app"', "sslmode": "require"},
        "TEST": {},
    }
    flat = comparable(entry, postgresql)
    assert entry["TEST"] == {}  # the caller's entry is left as it was
    assert (flat["ENGINE"], flat["PORT"], flat["NAME"]) == ("django_dbconfig.backends.postgresql", "5432", "")
    assert (flat["OPTIONS.options"], flat["OPTIONS.sslmode"], flat["TEST.MIGRATE"]) == (
        {"search_path": ("app",)},
        "require",
        True,
    )
    assert "OPTIONS" not in flat and "TEST" not in flat
    # search_path=app and search_path="app" send the same setting: one value.
    same = {**entry, "PORT": 5432, "OPTIONS": {"options": "-c search_path=app", "sslmode": "require"}}
    assert comparable(same, postgresql) == flat
    assert comparable({**entry, "PORT": 6432}, postgresql)["PORT"] == "6432"
    # SQLite has no port, and an options string there is only a string.
    lite = comparable(
        {"ENGINE": "django.db.backends.sqlite3", "NAME": "x", "OPTIONS": {"options": "-c a=1"}}, sqlite
    )
    assert (lite["PORT"], lite["NAME"], lite["OPTIONS.options"]) == ("", "x", "-c a=1")


def test_a_pool_for_asgi_requests_with_keywords_exports_as_written(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {"backend": "postgresql", "name": "app", "pool": {"when": "asgi", "max_size": 4}}
            }
        }
    )
    databases = project.databases()
    assert databases["default"]["DBCONFIG"]["asgi_pool"] == {"max_size": 4}
    assert export(databases, {"default": "postgresql"}, project.root)["default"]["pool"] == {
        "when": "asgi",
        "max_size": 4,
    }
