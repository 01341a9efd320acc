"""Connecting to PostgreSQL: the URL's checks, the session's settings, and every psycopg error
turned into one line a user can act on (naming the URL without its password)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row

from engine.errors import StoreError
from engine.store.locations import redact

#: xid8 and pg_current_xact_id() came in PostgreSQL 13.
MIN_SERVER_VERSION = 130000

# SQLSTATE → what the user can do about it.
HINTS = {
    "55P03": "a row stayed locked past the lock timeout: another process holds it; retry",
    "53100": "the database server's disk is full",
    "25006": "the server accepts no writes (a standby, or default_transaction_read_only)",
    "53300": "too many connections: raise max_connections or run fewer workers and dashboards",
    "42501": "the database role lacks a privilege on the experiment tables",
    "40001": "a concurrent update conflicted; retry",
    "40P01": "a deadlock between two writers; retry",
    "57014": "the statement was cancelled (statement_timeout or an administrator)",
    "57P01": "the server is shutting down; retry once it is back",
}
_UNREACHABLE = ("refused", "timeout", "timed out", "could not translate", "no route",
                "could not connect", "network is unreachable", "name or service")


def one_line(exc: BaseException, password: str | None) -> str:
    text = " ".join(part.strip() for part in str(exc).strip().splitlines() if part.strip())
    if password:  # libpq never echoes it; this makes sure, as written in the URL and decoded
        for form in (password, unquote(password)):
            text = text.replace(form, "***")
    return text or type(exc).__name__


@dataclass(frozen=True)
class Session:
    """How to open one session on the database at `url`, and how to word its errors."""

    url: str
    connect_timeout_s: float = 10.0
    lock_timeout_s: float = 30.0
    idle_in_transaction_timeout_s: float = 30.0

    @property
    def location(self) -> str:
        return redact(self.url)

    @property
    def password(self) -> str | None:
        return urlsplit(self.url).password

    def check_url(self) -> None:
        parts = urlsplit(self.url)
        try:
            info = conninfo_to_dict(self.url)
        except psycopg.Error as exc:
            raise StoreError(f"--db {self.location}: not a valid PostgreSQL URL "
                             f"({one_line(exc, self.password)})") from None
        # libpq's own sources may name the database: a service file entry (?service=NAME or
        # PGSERVICE) or PGDATABASE. The password may come from ~/.pgpass or PGPASSFILE too.
        named_elsewhere = (info.get("service") or os.environ.get("PGSERVICE")
                           or os.environ.get("PGDATABASE"))
        if not unquote(parts.path.lstrip("/")) and not info.get("dbname") and not named_elsewhere:
            raise StoreError(f"--db {self.location}: no database name; write "
                             "postgresql://user:password@host:port/dbname (or ?service=NAME)")

    def connect(self) -> psycopg.Connection[DictRow]:
        info = conninfo_to_dict(self.url)
        extra: dict[str, Any] = {}
        if "connect_timeout" not in info:
            extra["connect_timeout"] = max(1, round(self.connect_timeout_s))
        if "application_name" not in info:
            extra["application_name"] = "optical-tui"
        try:
            conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row, **extra)
        except psycopg.Error as exc:
            raise StoreError(self.connect_message(exc)) from None
        if conn.info.server_version < MIN_SERVER_VERSION:
            conn.close()
            major = conn.info.server_version // 10000
            raise StoreError(f"--db {self.location}: PostgreSQL {major} is too old; "
                             "optical-tui needs PostgreSQL 13 or newer")
        try:
            setup = sql.SQL("SET idle_in_transaction_session_timeout = {}; SET lock_timeout = {}")
            conn.execute(setup.format(
                sql.Literal(f"{round(self.idle_in_transaction_timeout_s * 1000)}ms"),
                sql.Literal(f"{round(self.lock_timeout_s * 1000)}ms")))
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"--db {self.location}: {one_line(exc, self.password)}") from None
        return conn

    def connect_message(self, exc: psycopg.Error) -> str:
        text = one_line(exc, self.password)
        low = text.lower()
        if "no password supplied" in low:
            hint = ("no password: put it in the URL, in ~/.pgpass (or PGPASSFILE) "
                    "or in a service file")
        elif "password authentication failed" in low:
            hint = "wrong user name or password"
        elif "database" in low and "does not exist" in low:
            hint = "create that database first, or fix its name in the URL"
        elif "role" in low and "does not exist" in low:
            hint = "no such user on that server"
        elif any(s in low for s in _UNREACHABLE):
            hint = "is the server running, and reachable from this box on that host and port?"
        else:
            hint = ""
        return f"--db {self.location}: cannot connect ({text})" + (f": {hint}" if hint else "")

    def error(self, exc: psycopg.Error, closed: bool) -> StoreError:
        """A driver error as one line; `closed`: the connection was lost with it."""
        text = one_line(exc, self.password)
        if closed or isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
            return StoreError(f"{self.location}: lost the connection to the database server "
                              f"({text}); it is reopened on the next try")
        hint = HINTS.get(exc.sqlstate or "")
        return StoreError(f"{self.location}: {text}" + (f" ({hint})" if hint else ""))
