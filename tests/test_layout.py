"""The package's layout as a contract: layers, purity of the settings builder, old ENGINE paths.

`lint-imports` (scripts/test.sh) checks the contracts in pyproject.toml; these tests show
that the contracts can fail, and check what import-linter cannot see: names private to a
module, the reason of each function-level import, and what building the settings loads.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import django_connection, query_one
from tests.helpers import needs_django_pool

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "django_dbconfig"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail(
            f"{LINT_IMPORTS} is missing: run bash scripts/setup.sh (import-linter is in the dev extra)."
        )
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        # The copy's package, not the installed one, is the one analysed.
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(project)},
        check=False,
    )


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """The package and its contracts in a folder of their own, to break on purpose."""
    shutil.copytree(PACKAGE, tmp_path / "django_dbconfig", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "contract"),
    [
        # The settings builder reaching up to the engines.
        ("conf/merge.py", "import django_dbconfig.routers", "Layers"),
        ("conf/merge.py", "import django_dbconfig.backends.postgresql.base", "Building the settings is pure"),
        ("backends/sqlite/settings.py", "import psycopg", "Building the settings is pure"),
        # A family importing another one's internals.
        ("backends/mysql/probe.py", "import django_dbconfig.backends.postgresql.probe", "independent"),
        # Rendering reaching the family's own engine.
        (
            "backends/postgresql/settings.py",
            "import django_dbconfig.backends.postgresql.client",
            "Within a family",
        ),
        # A cycle between two modules of one package.
        ("conf/layer.py", "import django_dbconfig.conf.config", "No import cycles"),
    ],
)
def test_an_import_against_the_architecture_fails_naming_it(
    package_copy: Path, module: str, statement: str, contract: str
) -> None:
    path = package_copy / "django_dbconfig" / module
    path.write_text(path.read_text() + f"\n{statement}  # noqa\n")
    result = lint_imports(package_copy)
    assert result.returncode == 1, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken
    importer = "django_dbconfig." + module.removesuffix(".py").replace("/", ".")
    # Layers and forbidden contracts name the whole path; the cycle report names siblings.
    assert importer in broken or f".{importer.rsplit('.', 1)[1]} -> " in broken


def _imports(tree: ast.AST) -> list[tuple[ast.ImportFrom | ast.Import, bool]]:
    """Every import statement, and whether it is inside a function."""
    found: list[tuple[ast.ImportFrom | ast.Import, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return found


def test_no_module_imports_a_name_private_to_another() -> None:
    crossing = []
    for path in modules():
        for node, _ in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("django_dbconfig"):
                crossing += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_")
                ]
    assert crossing == []


def test_every_function_level_import_says_why() -> None:
    """Left in a function only for startup time or an optional driver, with a comment saying so."""
    silent = []
    for path in modules():
        lines = path.read_text().splitlines()
        for node, in_function in _imports(ast.parse("\n".join(lines))):
            if not in_function:
                continue
            here = lines[node.lineno - 1]
            # The comment may head a group of imports: look above the group.
            above = node.lineno - 2
            while above >= 0 and lines[above].strip().startswith(("from ", "import ")):
                above -= 1
            if "#" not in here and not (above >= 0 and lines[above].strip().startswith("#")):
                silent.append(f"{path.relative_to(ROOT)}:{node.lineno} {here.strip()}")
    assert silent == []


@needs_django_pool
def test_building_the_settings_loads_no_database_code(tmp_path: Path) -> None:
    """What settings.py runs: no django.db, no driver, no engine, whatever the backends."""
    (tmp_path / "dbconfig.json").write_text(
        '{"databases": {"default": {"url": "postgresql://app@db.internal/app", "pool": true,'
        ' "password_provider": "django_dbconfig.credentials.aws_rds_iam"},'
        ' "mysql": {"url": "mysql://app@mysql.internal/app", "read_only": true},'
        ' "replica": {"host": "replica.internal", "replica_of": "default"}}}'
    )
    script = textwrap.dedent(
        f"""
        import sys
        from django_dbconfig import build_databases
        databases = build_databases({str(tmp_path)!r}, environ={{}})
        assert sorted(databases) == ["default", "mysql", "replica"], databases
        loaded = sorted(
            name for name in sys.modules
            if name.split(".")[0] in ("psycopg", "psycopg_pool", "MySQLdb", "boto3")
            or name == "django.db" or name.startswith("django.db.")
            or name.startswith(("django_dbconfig.backends.postgresql.base", "django_dbconfig.backends.mysql.base"))
            or name.endswith(".probe")
        )
        print(loaded)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_old_engine_paths_load_the_same_engines() -> None:
    from django.db.utils import load_backend

    for family in ("postgresql", "mysql"):
        old = load_backend(f"django_dbconfig.engines.{family}").DatabaseWrapper
        new = load_backend(f"django_dbconfig.backends.{family}").DatabaseWrapper
        assert old is new
        assert new.__module__ == f"django_dbconfig.backends.{family}.base"


@pytest.mark.postgresql
def test_an_old_engine_path_serves_postgresql_with_every_setting(
    project: Any, shared_postgres: dict[str, Any]
) -> None:
    project.write_config(
        {
            "databases": {
                "default": {
                    "backend": "postgresql",
                    "host": shared_postgres["host"],
                    "port": shared_postgres["port"],
                    "user": shared_postgres["user"],
                    "name": shared_postgres["dbname"],
                    "read_only": True,
                    "statement_timeout": "1500ms",
                }
            }
        }
    )
    settings = project.databases()["default"]
    assert settings["ENGINE"] == "django_dbconfig.backends.postgresql"
    settings["ENGINE"] = "django_dbconfig.engines.postgresql"  # a settings file written before 0.2
    with django_connection(settings) as connection:
        assert type(connection).__module__ == "django_dbconfig.backends.postgresql.base"
        assert query_one(connection, "SHOW statement_timeout") == "1500ms"
        assert query_one(connection, "SHOW default_transaction_read_only") == "on"


@pytest.mark.mariadb
def test_an_old_engine_path_serves_mariadb_with_every_setting(
    project: Any, shared_mariadb: dict[str, Any]
) -> None:
    project.write_config(
        {
            "databases": {
                "default": {
                    "backend": "mariadb",
                    "host": shared_mariadb["host"],
                    "port": shared_mariadb["port"],
                    "user": shared_mariadb["user"],
                    "name": shared_mariadb["database"],
                    "read_only": True,
                    "statement_timeout": "1500ms",
                }
            }
        }
    )
    settings = project.databases()["default"]
    assert settings["ENGINE"] == "django_dbconfig.backends.mysql"
    settings["ENGINE"] = "django_dbconfig.engines.mysql"
    with django_connection(settings) as connection:
        assert type(connection).__module__ == "django_dbconfig.backends.mysql.base"
        assert float(query_one(connection, "SELECT @@session.max_statement_time")) == 1.5
        assert int(query_one(connection, "SELECT @@session.tx_read_only")) == 1
