"""The README's quick start works as written, in every profile.

The `dbconfig.json` and `.secrets/dbconfig.json` examples are read from README.md itself
(its JSON code blocks), put into a copy of the example project (whose apps are `shop`
and `reports`), and `manage.py check`, `dbconfig` and `dbcheck` run with each profile.

- `development`: every alias on SQLite, the real local files.
- no profile: PostgreSQL at the README's hosts, which do not exist. The test points each
  alias at the session's throwaway PostgreSQL with TLS through environment variables, the documented
  highest layer below overrides: `DBCONFIG_<ALIAS>_HOST=localhost` (the name on the server's
  certificate, so verify-full holds), `DBCONFIG_<ALIAS>_PORT`, and `DBCONFIG_<ALIAS>_USER=postgres`
  (the README's roles do not exist there; postgres is trusted, so the README's "..." password
  is sent and not needed). The README's `certs/ca.pem` is the test CA.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.test_example_project import EXAMPLE, manage

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_json_blocks() -> list[Any]:
    text = README.read_text(encoding="utf-8")
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)]


def readme_examples() -> tuple[dict[str, Any], dict[str, Any]]:
    """(dbconfig.json, .secrets/dbconfig.json) as the quick start shows them."""
    blocks = readme_json_blocks()
    config = next(b for b in blocks if {"databases", "environments"} <= set(b))
    secrets = next(
        b
        for b in blocks
        if set(b) == {"databases"} and all(set(v) == {"password"} for v in b["databases"].values())
    )
    return config, secrets


@pytest.fixture
def readme_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("*.sqlite3", "__pycache__"))
    config, secrets = readme_examples()
    (project / "dbconfig.json").write_text(json.dumps(config))
    secrets_file = project / ".secrets" / "dbconfig.json"
    shutil.rmtree(secrets_file.parent, ignore_errors=True)  # the example project's own
    secrets_file.parent.mkdir()
    secrets_file.write_text(json.dumps(secrets))
    secrets_file.chmod(0o600)
    return project


def test_the_readme_examples_are_found() -> None:
    config, secrets = readme_examples()
    assert set(config["databases"]) == {"default", "analytics", "replica"}
    assert set(config["environments"]) == {"development"}
    assert set(secrets["databases"]) == {"default", "analytics"}


def test_development_profile_check_dbconfig_and_dbcheck(readme_project: Path) -> None:
    env = {"DBCONFIG_ENV": "development"}
    check = manage(readme_project, "check", env=env)
    assert (check.returncode, check.stderr) == (0, "")
    assert check.stdout == "System check identified no issues (0 silenced).\n"

    shown = manage(readme_project, "dbconfig", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == ""
    # The .secrets passwords are for PostgreSQL: on SQLite they are unused, and shown as such.
    default = shown.stdout.split("\n\n")[0].splitlines()
    assert default[0] == "default (sqlite)"
    unused_at = default.index("  unused: sqlite has no use for these keys")
    assert default[unused_at + 1].split() == [
        "password",
        "********",
        ".secrets/dbconfig.json:",
        "databases.default.password",
    ]
    data = json.loads(manage(readme_project, "dbconfig", "--format", "json", env=env).stdout)
    unused = {db["alias"]: {row["key"]: row for row in db["unused"]} for db in data["databases"]}
    assert unused["analytics"]["password"] == {
        "key": "password",
        "value": "********",
        "source": ".secrets/dbconfig.json: databases.analytics.password",
    }

    # No file exists yet: a warning each, and the replica's names the alias owning its file.
    first = manage(readme_project, "dbcheck", "--format", "json", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    report = {db["alias"]: db for db in json.loads(first.stdout)["databases"]}
    assert {alias: [p["id"] for p in db["problems"]] for alias, db in report.items()} == {
        "default": ["dbconfig.W102"],
        "analytics": ["dbconfig.W102"],
        "replica": ["dbconfig.W102"],
    }
    assert (
        report["replica"]["problems"][0]["hint"] == "Run manage.py migrate --database default to create it."
    )
    assert 'It is the file of "default"' in report["replica"]["problems"][0]["message"]

    for alias in ("default", "analytics"):
        migrated = manage(readme_project, "migrate", "--database", alias, "-v", "0", env=env)
        assert (migrated.returncode, migrated.stdout, migrated.stderr) == (0, "", "")  # no W102 in migrate
    second = manage(readme_project, "dbcheck", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.splitlines()[-1] == "All 3 databases passed."


def test_a_configuration_error_shows_no_chained_traceback(readme_project: Path) -> None:
    shown = manage(readme_project, "dbconfig", env={"DBCONFIG_ENV": "developmnet"})
    assert shown.returncode == 1
    assert "KeyError" not in shown.stderr
    assert "During handling of the above exception" not in shown.stderr
    assert shown.stderr.splitlines()[-1] == (
        'django_dbconfig.core.errors.DbConfigError: DBCONFIG_ENV: unknown environment "developmnet". '
        'Known environments: "development". Did you mean "development"? Add environments.developmnet '
        "to dbconfig.json, or fix DBCONFIG_ENV."
    )


@pytest.mark.postgresql
@pytest.mark.slow
def test_no_profile_on_postgresql_check_dbconfig_and_dbcheck(
    readme_project: Path, pg_tls_server: Any, pg_tls_standby: Any, tls_ca: Any
) -> None:
    server = pg_tls_server
    server.psql('CREATE SCHEMA "app"')  # the README's search_path: ["app", "public"]
    server.psql('CREATE DATABASE "analytics"')
    try:
        _check_no_profile(readme_project, server, tls_ca, standby_port=pg_tls_standby.port)
    finally:
        server.psql('DROP SCHEMA "app" CASCADE')
        server.psql('DROP DATABASE "analytics" WITH (FORCE)')


def _check_no_profile(readme_project: Path, server: Any, tls_ca: Any, *, standby_port: int) -> None:
    certs = readme_project / "certs"
    certs.mkdir()
    shutil.copy(tls_ca.ca_path, certs / "ca.pem")
    env: dict[str, str] = {}
    for alias in ("default", "analytics"):
        prefix = f"DBCONFIG_{alias.upper()}_"
        env |= {prefix + "HOST": "localhost", prefix + "PORT": str(server.port), prefix + "USER": "postgres"}
    # The replica says only where it is (a streaming standby of the server); the rest it inherits.
    env |= {"DBCONFIG_REPLICA_HOST": "localhost", "DBCONFIG_REPLICA_PORT": str(standby_port)}

    check = manage(readme_project, "check", env=env)
    assert (check.returncode, check.stderr) == (0, "")

    shown = manage(readme_project, "dbconfig", "--format", "json", env=env)
    assert shown.returncode == 0, shown.stderr
    data = {db["alias"]: db for db in json.loads(shown.stdout)["databases"]}
    settings = {row["key"]: row for row in data["default"]["settings"]}
    assert settings["password"] == {
        "key": "password",
        "value": "********",
        "source": ".secrets/dbconfig.json: databases.default.password",
    }
    assert settings["search_path"]["value"] == ["app", "public"]
    assert settings["port"]["value"] == server.port
    assert {row["key"]: row["value"] for row in data["analytics"]["settings"]}["read_only"] is True

    verified = manage(readme_project, "dbcheck", "--format", "json", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = {db["alias"]: db for db in json.loads(verified.stdout)["databases"]}
    assert [(a, db["vendor"], db["ok"]) for a, db in report.items()] == [
        ("default", "postgresql", True),
        ("analytics", "postgresql", True),
        ("replica", "postgresql", True),
    ]
    assert (report["default"]["tls"]["in_use"], report["default"]["tls"]["verified"]) == (True, True)
    assert report["default"]["schemas"]["missing"] == []
    assert report["default"]["settings"]["statement_timeout"]["actual"] == "30s"
    assert report["analytics"]["settings"]["statement_timeout"]["actual"] == "5min"
    assert report["analytics"]["settings"]["read_only"]["actual"] is True
    # The replica inherited the primary's TLS, search_path and timeouts, and is a standby.
    replica = report["replica"]
    assert (replica["tls"]["in_use"], replica["tls"]["verified"]) == (True, True)
    assert replica["schemas"] == {"expected": ["app", "public"], "missing": [], "created": []}
    assert replica["settings"]["statement_timeout"]["actual"] == "30s"
    assert replica["server"]["role"] == "standby" and replica["replication"]["standby"] is True
