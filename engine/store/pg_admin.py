"""Administrative SQL for the PostgreSQL server that `engine/pg_server.py` manages.

Kept apart from the server code because only `engine/store*.py` modules may contain SQL.
Every function takes a superuser connection in autocommit mode (CREATE/DROP DATABASE cannot
run inside a transaction). Names and passwords are composed client-side with `psycopg.sql`:
utility statements such as CREATE ROLE take no bind parameters.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql


def ping(conn: psycopg.Connection[Any]) -> None:
    """One round trip: proves the server accepts queries on this connection."""
    conn.execute("SELECT 1").fetchone()


def ensure_login_role(conn: psycopg.Connection[Any], name: str, password: str) -> None:
    """Create the login role, or reset its password so it matches the stored one."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    statement = sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}" if exists
                        else "CREATE ROLE {} LOGIN PASSWORD {}")
    conn.execute(statement.format(sql.Identifier(name), sql.Literal(password)))


def database_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def create_database(conn: psycopg.Connection[Any], name: str, owner: str) -> None:
    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                              sql.Identifier(owner)))


def drop_database(conn: psycopg.Connection[Any], name: str) -> None:
    # FORCE ends sessions a test left open, which would otherwise make the DROP fail.
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
