"""inherit(): one alias completed with another's tagged values (replicas, like=)."""

from __future__ import annotations

from typing import Any

from django_dbconfig.conf.inherit import NOT_INHERITED_BY_REPLICAS, inherit
from django_dbconfig.conf.layer import Origin, Value


def value(raw: Any, where: str, *, defaults: bool = False) -> Value:
    return Value(raw, Origin("dbconfig.json", where), 1, from_defaults=defaults)


def test_inherit_is_a_pure_function_over_tagged_values() -> None:
    parent = {
        "backend": value("postgresql", "databases.p.backend"),
        "host": value("p.internal", "databases.p.host"),
        "user": value("app", "databases.p.user"),
        "password": value("pw", "databases.p.password"),
        "options.sslcompression": value(1, "databases.p.options.sslcompression"),
        "test.NAME": value("t", "databases.p.test.NAME"),
        "statement_timeout": value(30000, "defaults.statement_timeout", defaults=True),
    }
    own = {
        "host": value("c.internal", "databases.c.host"),
        "statement_timeout": value(30000, "defaults.statement_timeout", defaults=True),
    }
    result = inherit(parent, own, parent_alias="p", not_inherited=NOT_INHERITED_BY_REPLICAS)
    assert {key: (v.value, str(v.origin), v.inherited) for key, v in result.items()} == {
        "backend": ("postgresql", "inherited from p: dbconfig.json: databases.p.backend", True),
        "host": ("c.internal", "dbconfig.json: databases.c.host", False),
        "user": ("app", "inherited from p: dbconfig.json: databases.p.user", True),
        "password": ("pw", "inherited from p: dbconfig.json: databases.p.password", True),
        "options.sslcompression": (
            1,
            "inherited from p: dbconfig.json: databases.p.options.sslcompression",
            True,
        ),
        "statement_timeout": (30000, "dbconfig.json: defaults.statement_timeout", False),
    }
    # like= (runtime databases) inherits host and port too: only what the caller excludes stays out.
    alike = inherit(parent, {"user": value("other", "x.user")}, parent_alias="p", not_inherited=())
    assert [alike["host"].value, alike["user"].value, "password" in alike] == ["p.internal", "other", False]
