"""Role defaults as PostgreSQL stores them (`pooler: transaction`) read back right."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from django_dbconfig.backends.postgresql.pooler import read_role_defaults, role_default_sql
from django_dbconfig.backends.postgresql.probe import same_setting
from django_dbconfig.backends.postgresql.settings import session_settings

pytestmark = pytest.mark.postgresql


def test_quoted_schema_names_in_a_role_default_match_what_was_asked(shared_postgres: dict[str, Any]) -> None:
    role = f"rd_{uuid.uuid4().hex[:10]}"
    wanted = session_settings({"search_path": ("App Data", 'it"s', "public")})["search_path"]
    with psycopg.connect(**shared_postgres, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        try:
            admin.execute(role_default_sql(role, shared_postgres["dbname"], "search_path", wanted))
            with psycopg.connect(**{**shared_postgres, "user": role}) as conn, conn.cursor() as cursor:
                stored = read_role_defaults(cursor)["search_path"]
            # The server stores the list with a space after each comma.
            assert ", " in stored
            assert same_setting("search_path", stored, wanted)
            assert not same_setting(
                "search_path", stored, session_settings({"search_path": ("App Data",)})["search_path"]
            )
        finally:
            admin.execute(f'DROP ROLE "{role}"')
