"""Runtime databases without a server: validation, rendering, like=, removal and reuse of a name (SQLite)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections, transaction
from django.test import override_settings
from django.utils.connection import ConnectionDoesNotExist

import django_dbconfig
from django_dbconfig import DbConfigError, add_database, remove_database, runtime_database
from django_dbconfig.routers import DatabaseRouter, reset_pins, use_database
from django_dbconfig.runtime.databases import runtime_aliases
from tests.apps.shop.models import Order
from tests.helpers import needs_django_pool

PG_DEFAULT = {
    "backend": "postgresql",
    "host": "db.internal",
    "port": 6432,
    "name": "app",
    "user": "app",
    "password": "s3cret-pw",
    "sslmode": "verify-full",
    "search_path": ["app", "public"],
}


@pytest.fixture
def unblocked(django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        yield


def sqlite(path: Path, **keys: Any) -> dict[str, Any]:
    return {"backend": "sqlite", "name": str(path), **keys}


def test_runtime_names_are_exported_lazily() -> None:
    assert django_dbconfig.runtime_database is runtime_database
    assert {"add_database", "remove_database", "runtime_database", "check_databases"} <= set(
        django_dbconfig.__all__
    )


def test_the_entry_has_every_default_django_fills_in(tmp_path: Path) -> None:
    add_database("tenant_a", sqlite(tmp_path / "a.sqlite3"))
    entry = connections.settings["tenant_a"]
    assert entry == connections.configure_settings({"default": dict(entry)})["default"]
    assert entry["TIME_ZONE"] is None
    assert entry["TEST"] == {
        "CHARSET": None,
        "COLLATION": None,
        "MIGRATE": True,
        "MIRROR": None,
        "NAME": None,
    }
    assert connections["tenant_a"].settings_dict is entry


def test_bad_key_is_named_with_its_source() -> None:
    with pytest.raises(DbConfigError) as caught:
        add_database("tenant_42", {"backend": "postgresql", "name": "t", "statement_timeout": "5 parsecs"})
    assert str(caught.value).startswith('add_database("tenant_42"): statement_timeout (alias "tenant_42"): ')
    with pytest.raises(
        DbConfigError, match=r'add_database\("tenant_42"\): hots: unknown key "hots".*Did you mean "host"\?'
    ):
        add_database("tenant_42", {"hots": "x"})
    with pytest.raises(
        DbConfigError, match=r'add_database\("Tenant 42"\): alias "Tenant 42" is not a valid alias name'
    ):
        add_database("Tenant 42", {"backend": "sqlite", "name": "x"})
    with pytest.raises(DbConfigError, match=r"search_path is not supported on SQLite"):
        add_database("tenant_42", {"backend": "sqlite", "name": "x", "search_path": ["t"]})
    assert "tenant_42" not in connections.settings
    assert runtime_aliases() == ()


def test_a_password_never_appears_in_an_error() -> None:
    with pytest.raises(DbConfigError) as caught:
        add_database("tenant_42", {"backend": "postgresql", "name": "t", "password": ["s3cret-pw"]})
    assert "s3cret-pw" not in str(caught.value)
    assert "password is secret" in str(caught.value)


def test_adding_an_existing_alias_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DbConfigError, match=r'the alias "default" already exists. It is in DATABASES'):
        add_database("default", sqlite(tmp_path / "x.sqlite3"))
    add_database("tenant_a", sqlite(tmp_path / "a.sqlite3"))
    with pytest.raises(DbConfigError, match=r'Choose another name, or remove_database\("tenant_a"\) first'):
        add_database("tenant_a", sqlite(tmp_path / "b.sqlite3"))
    assert connections.settings["tenant_a"]["NAME"] == str(tmp_path / "a.sqlite3")


def test_removing_an_alias_of_databases_or_an_unknown_one_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DbConfigError, match=r'"default" is in DATABASES, not a runtime database'):
        remove_database("default")
    add_database("tenant_a", sqlite(tmp_path / "a.sqlite3"))
    with pytest.raises(
        DbConfigError, match=r'there is no runtime database "tenant_b".*Did you mean "tenant_a"\?'
    ):
        remove_database("tenant_b")


def test_like_inherits_every_effective_key_and_the_given_keys_win(built_config: Any) -> None:
    built_config({"defaults": {"statement_timeout": "30s"}, "databases": {"default": PG_DEFAULT}})
    add_database("tenant_42", {"name": "tenant_42", "search_path": ["t42"]}, like="default")
    entry = connections.settings["tenant_42"]
    assert (entry["HOST"], entry["PORT"], entry["USER"], entry["PASSWORD"]) == (
        "db.internal",
        6432,
        "app",
        "s3cret-pw",
    )
    assert entry["NAME"] == "tenant_42"
    assert entry["OPTIONS"]["sslmode"] == "verify-full"
    # The config's defaults apply; the given search_path wins over the inherited one.
    assert entry["OPTIONS"]["options"] == '-c search_path="t42" -c statement_timeout=30000ms'


def test_like_takes_user_and_password_as_a_pair(built_config: Any) -> None:
    built_config({"databases": {"default": PG_DEFAULT}})
    add_database("other_user", {"user": "tenant"}, like="default")
    assert (connections.settings["other_user"]["USER"], connections.settings["other_user"]["PASSWORD"]) == (
        "tenant",
        "",
    )
    add_database("same_user", {"user": "app"}, like="default")
    assert connections.settings["same_user"]["PASSWORD"] == "s3cret-pw"


def test_like_with_a_url_takes_no_connection_part_of_the_other_alias(built_config: Any) -> None:
    built_config({"databases": {"default": PG_DEFAULT}})
    add_database("elsewhere", {"url": "postgresql://t@tenants.internal/t1"}, like="default")
    entry = connections.settings["elsewhere"]
    assert (entry["HOST"], entry["PORT"], entry["USER"], entry["PASSWORD"], entry["NAME"]) == (
        "tenants.internal",
        5432,
        "t",
        "",
        "t1",
    )
    assert entry["OPTIONS"]["sslmode"] == "verify-full"


def test_like_a_runtime_alias_and_like_an_unknown_one(built_config: Any) -> None:
    built_config({"databases": {"default": PG_DEFAULT}})
    add_database("tenant_1", {"name": "t1"}, like="default")
    add_database("tenant_2", {"search_path": ["two"]}, like="tenant_1")
    assert (connections.settings["tenant_2"]["NAME"], connections.settings["tenant_2"]["HOST"]) == (
        "t1",
        "db.internal",
    )
    with pytest.raises(
        DbConfigError,
        match=r'like="tenant_3" is not an alias. Known aliases: "default", "tenant_1" or "tenant_2". Did you mean "tenant_2"\?',
    ):
        add_database("tenant_4", {}, like="tenant_3")


def test_the_alias_works_with_using_use_database_and_transactions(
    tmp_path: Path, unblocked: None, built_config: Any
) -> None:
    built_config({"databases": {"default": sqlite(tmp_path / "default.sqlite3")}})  # the router reads it
    with runtime_database(sqlite(tmp_path / "t.sqlite3")) as alias:
        call_command("migrate", "shop", database=alias, verbosity=0)
        Order.objects.using(alias).create(reference="a")
        with (
            override_settings(DATABASE_ROUTERS=["django_dbconfig.routers.DatabaseRouter"]),
            use_database(alias),
        ):
            Order.objects.create(reference="b")
        with pytest.raises(RuntimeError), transaction.atomic(using=alias):
            Order.objects.using(alias).create(reference="rolled back")
            raise RuntimeError
        assert sorted(Order.objects.using(alias).values_list("reference", flat=True)) == ["a", "b"]
    assert alias not in connections.settings
    with pytest.raises(ConnectionDoesNotExist):
        connections[alias]


def test_runtime_database_removes_the_alias_when_the_block_fails(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), runtime_database(sqlite(tmp_path / "t.sqlite3")) as alias:
        assert alias in connections.settings
        1 / 0  # noqa: B018
    assert alias not in connections.settings
    assert runtime_aliases() == ()


def test_a_name_added_again_uses_the_new_settings_in_every_thread(tmp_path: Path, unblocked: None) -> None:
    """A worker thread that used the old alias gets a connection with the new settings, not its old object."""

    def database_file() -> str:
        with connections["tenant"].cursor() as cursor:
            cursor.execute("PRAGMA database_list")
            return str(cursor.fetchone()[2])

    with ThreadPoolExecutor(max_workers=1) as worker:
        add_database("tenant", sqlite(tmp_path / "first.sqlite3"))
        assert worker.submit(database_file).result() == str(tmp_path / "first.sqlite3")
        remove_database("tenant")
        with pytest.raises(ConnectionDoesNotExist):
            worker.submit(database_file).result()
        add_database("tenant", sqlite(tmp_path / "second.sqlite3"))
        assert worker.submit(database_file).result() == str(tmp_path / "second.sqlite3")


def test_an_object_held_across_removal_cannot_connect(tmp_path: Path, unblocked: None) -> None:
    add_database("tenant", sqlite(tmp_path / "t.sqlite3"))
    held: list[Any] = []
    thread = threading.Thread(target=lambda: held.append(connections["tenant"]))
    thread.start()
    thread.join()
    remove_database("tenant")
    add_database("tenant", sqlite(tmp_path / "other.sqlite3"))
    stale = held[0]
    stale.inc_thread_sharing()
    with pytest.raises(DbConfigError, match=r'The runtime database "tenant" was removed'):
        stale.ensure_connection()
    assert stale.connection is None


def test_a_runtime_alias_migrates_the_models_of_the_alias_it_is_like(built_config: Any) -> None:
    built_config({"databases": {"default": PG_DEFAULT, "analytics": {**PG_DEFAULT, "name": "analytics"}}})
    router = DatabaseRouter(
        routes={"reports": "analytics"}, replicas={}, databases=dict.fromkeys(("default", "analytics"))
    )
    add_database("tenant", {"name": "t"}, like="default")
    add_database("warehouse_2", {"name": "w2"}, like="analytics")
    add_database("scratch", {"backend": "sqlite", "name": "scratch.sqlite3"})
    assert [router.allow_migrate(alias, "shop") for alias in ("tenant", "warehouse_2", "scratch")] == [
        True,
        False,
        True,
    ]
    assert [router.allow_migrate(alias, "reports") for alias in ("tenant", "warehouse_2", "scratch")] == [
        False,
        True,
        False,
    ]


def test_a_runtime_replica_inherits_its_primarys_keys_but_the_server_and_is_read_only(
    built_config: Any,
) -> None:
    built_config({"databases": {"default": PG_DEFAULT}})
    add_database("tenant", {"name": "t42", "search_path": ["t42"]}, like="default")
    add_database("tenant_r", {"host": "r.internal", "port": 5432}, replica_of="tenant")
    primary, replica = connections.settings["tenant"], connections.settings["tenant_r"]
    assert [replica["HOST"], replica["PORT"], replica["NAME"], replica["USER"], replica["PASSWORD"]] == [
        "r.internal",
        5432,
        "t42",
        "app",
        "s3cret-pw",
    ]
    assert replica["OPTIONS"]["sslmode"] == primary["OPTIONS"]["sslmode"] == "verify-full"
    assert "default_transaction_read_only=on" in replica["OPTIONS"]["options"]
    assert "default_transaction_read_only" not in primary["OPTIONS"].get("options", "")
    assert replica["TEST"]["MIRROR"] == "tenant"
    # like= a replica: another replica of the same primary.
    add_database("tenant_r2", {"host": "r2.internal"}, like="tenant_r")
    assert [
        connections.settings["tenant_r2"]["TEST"]["MIRROR"],
        connections.settings["tenant_r2"]["HOST"],
    ] == [
        "tenant",
        "r2.internal",
    ]


def test_a_primary_with_runtime_replicas_is_not_removed_before_them(built_config: Any) -> None:
    built_config({"databases": {"default": PG_DEFAULT}})
    add_database("tenant", {"name": "t42"}, like="default")
    add_database("tenant_r", {"host": "r.internal"}, replica_of="tenant")
    add_database("tenant_r2", {"host": "r2.internal"}, replica_of="tenant")
    with pytest.raises(DbConfigError) as caught:
        remove_database("tenant")
    assert str(caught.value) == (
        'remove_database("tenant"): "tenant" has runtime replicas: "tenant_r" or "tenant_r2". Remove them '
        "first (remove_database() each), then the primary."
    )
    remove_database("tenant_r")
    remove_database("tenant_r2")
    remove_database("tenant")
    assert "tenant" not in connections.settings


@pytest.mark.parametrize(
    ("replica_of", "message"),
    [
        ("tenant_x", 'replica_of names "tenant_x", which is not an alias.'),
        ("tenant_r", '"tenant_r" is itself a replica. Point replica_of at its primary.'),
    ],
)
def test_a_runtime_replica_of_an_unknown_alias_or_of_a_replica_is_an_error(
    built_config: Any, replica_of: str, message: str
) -> None:
    built_config({"databases": {"default": PG_DEFAULT}})
    add_database("tenant", {"name": "t42"}, like="default")
    add_database("tenant_r", {"host": "r.internal"}, replica_of="tenant")
    with pytest.raises(DbConfigError) as caught:
        add_database("tenant_r9", {"host": "r9.internal"}, replica_of=replica_of)
    assert message in str(caught.value)
    assert str(caught.value).startswith('add_database("tenant_r9"): replica_of')
    assert "s3cret-pw" not in str(caught.value)


def test_the_router_spreads_a_tenants_reads_over_its_runtime_replicas(
    tmp_path: Path, built_config: Any, unblocked: None
) -> None:
    built_config({"databases": {"default": sqlite(tmp_path / "d.sqlite3")}})
    router = DatabaseRouter(routes={}, replicas={}, databases=dict.fromkeys(("default",)))
    add_database("tenant", sqlite(tmp_path / "t.sqlite3"))
    add_database("tenant_r1", {}, replica_of="tenant")  # SQLite: the primary's own file
    add_database("tenant_r2", {}, like="tenant_r1")
    seen = []
    with use_database("tenant"):
        for _ in range(4):
            first = router.db_for_read(Order)
            seen.append(first)
            assert router.db_for_read(Order) == first  # one replica per request
            reset_pins()
        assert router.db_for_write(Order) == "tenant"
        assert router.db_for_read(Order) == "tenant"  # read-your-writes
        reset_pins()
        with transaction.atomic(using="tenant"):
            assert router.db_for_read(Order) == "tenant"
    assert sorted(seen) == ["tenant_r1", "tenant_r1", "tenant_r2", "tenant_r2"]
    assert [router.allow_migrate("tenant_r1", "shop"), router.allow_migrate("tenant", "shop")] == [
        False,
        True,
    ]
    with use_database("tenant"):
        chosen = router.db_for_read(Order)
        remove_database(chosen)  # in the middle of a request that reads from it
        others = {"tenant_r1", "tenant_r2"} - {chosen}
        assert router.db_for_read(Order) in others
        reset_pins()
        assert {(router.db_for_read(Order), reset_pins())[0] for _ in range(3)} == others
    remove_database(others.pop())
    with use_database("tenant"):
        assert router.db_for_read(Order) == "tenant"


def test_no_password_in_the_repr_of_what_is_registered(built_config: Any) -> None:
    from django_dbconfig.runtime.databases import _runtime

    built_config({"databases": {"default": PG_DEFAULT}})
    add_database("tenant_42", {}, like="default")
    assert "s3cret-pw" not in repr(_runtime)


def test_a_fresh_alias_per_request_does_not_keep_one_name_per_request(
    tmp_path: Path, unblocked: None
) -> None:
    import gc

    from django_dbconfig.runtime import tracking

    for _ in range(50):
        with runtime_database(sqlite(tmp_path / "t.sqlite3")) as alias, connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
    gc.collect()  # the closed connection objects are gone: their names can be forgotten
    with runtime_database(sqlite(tmp_path / "t.sqlite3")):
        pass
    assert len(tracking._names) <= 2


def test_like_with_another_backend_takes_only_what_that_backend_uses(
    built_config: Any, tmp_path: Path
) -> None:
    built_config({"defaults": {"conn_max_age": 30}, "databases": {"default": PG_DEFAULT}})
    add_database("scratch", {"backend": "sqlite", "name": str(tmp_path / "s.sqlite3")}, like="default")
    entry = connections.settings["scratch"]
    assert (entry["ENGINE"], entry["NAME"], entry["HOST"], entry["USER"], entry["PASSWORD"]) == (
        "django.db.backends.sqlite3",
        str(tmp_path / "s.sqlite3"),
        "",
        "",
        "",
    )
    assert "sslmode" not in entry["OPTIONS"]
    assert entry["CONN_MAX_AGE"] == 30  # the config's defaults still apply


def test_system_checks_and_dbcheck_read_a_snapshot_while_tenants_come_and_go(tmp_path: Path) -> None:
    """`manage.py check` iterates the aliases while another thread adds and removes tenants."""
    from django_dbconfig.checks import check_configuration, check_deploy
    from django_dbconfig.checks.dbcheck import verify

    for n in range(100):
        add_database(f"kept_{n}", sqlite(tmp_path / f"kept_{n}.sqlite3"))
    stop = threading.Event()

    def churn() -> None:
        n = 0
        while not stop.is_set():
            alias = f"churn_{n % 50}"
            add_database(alias, sqlite(tmp_path / f"{alias}.sqlite3"))
            remove_database(alias)
            n += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(200):
            check_configuration()
            check_deploy()
            verify([])
    finally:
        stop.set()
        worker.join()
        sys.setswitchinterval(interval)
        for n in range(100):
            remove_database(f"kept_{n}")


def test_a_runtime_alias_takes_the_defaults_of_the_config(built_config: Any, tmp_path: Path) -> None:
    built_config(
        {"defaults": {"conn_max_age": 123}, "databases": {"default": sqlite(tmp_path / "d.sqlite3")}}
    )
    add_database("tenant_d", sqlite(tmp_path / "t.sqlite3"))
    assert connections.settings["tenant_d"]["CONN_MAX_AGE"] == 123


@pytest.mark.parametrize(
    ("pool", "options_pool", "asgi_pool"),
    [
        pytest.param(
            True,
            {"min_size": 0, "max_size": 2, "num_workers": 1, "max_idle": 60},
            None,
            marks=needs_django_pool,
        ),
        pytest.param(
            {"max_size": 8},
            {"min_size": 0, "max_size": 8, "num_workers": 1, "max_idle": 60},
            None,
            marks=needs_django_pool,
        ),
        ("asgi", None, {"min_size": 0, "max_size": 2, "num_workers": 1, "max_idle": 60}),
        (
            {"when": "asgi", "max_idle": 30},
            None,
            {"min_size": 0, "max_size": 2, "num_workers": 1, "max_idle": 30},
        ),
    ],
)
def test_a_runtime_postgresql_alias_gets_small_pools_its_keywords_win(
    pool: Any, options_pool: Any, asgi_pool: Any
) -> None:
    # Many tenants, each with a pool: no idle connection kept, two at most, unless the alias says otherwise.
    add_database("tenant_p", {**PG_DEFAULT, "pool": pool})
    entry = connections.settings["tenant_p"]
    assert (entry["OPTIONS"].get("pool"), entry.get("DBCONFIG", {}).get("asgi_pool")) == (
        options_pool,
        asgi_pool,
    )
