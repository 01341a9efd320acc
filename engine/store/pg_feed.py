"""What PostgreSQL readers follow: the change feed (LISTEN/NOTIFY) a dashboard polls, and the
transaction-aware cursors of `metrics_since` / `events_since`.

Ids are handed out at insert, not at commit, so "rows after my last id" can skip a row whose
transaction commits late. Each metric and event row records its transaction id (xid8); a reader's
cursor only moves past transactions that had finished when it read (`pg_snapshot_xmin`), and
drops rows it already returned (`TxCursor`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import DictRow

from engine.store.postgres_schema import CHANNEL


@dataclass(frozen=True)
class TxCursor:
    """Where an incremental reader stands: it has read every row of every transaction numbered
    below `xmin` (all had finished when it last read), and the rows in `seen` (from transactions
    at or above `xmin`, re-read next time because one of them might still commit).

    A writing transaction left open holds `xmin` back, and each read then re-reads the rows since
    it (dropping those in `seen`): slower, never wrong. This store's own sessions are ended after
    `idle_in_transaction_timeout_s` idle inside a transaction."""

    xmin: int
    seen: frozenset[int]


def since_query(table: str, columns: str, cursor: object | None,
                everything: bool) -> tuple[sql.Composed, list[Any]]:
    """One statement (one snapshot) reading the rows committed since `cursor`, each row with its
    transaction, and that snapshot's xmin: every transaction numbered below it had finished,
    committed or not, when we read."""
    if cursor is not None and not isinstance(cursor, TxCursor):
        raise TypeError(f"not a PostgreSQL cursor: {cursor!r}")
    if cursor is not None:
        join, params = "t.tx >= %s::xid8", [str(cursor.xmin)]
    elif everything:
        join, params = "true", []
    else:
        join, params = "t.tx >= s.xmin", []
    query = sql.SQL(f"SELECT s.xmin::text AS snapshot_xmin, t.tx::text AS row_tx, {columns} "
                    "FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin) s "
                    f"LEFT JOIN {{}} t ON {join} ORDER BY t.id").format(sql.Identifier(table))
    return query, params


def since_rows(rows: Sequence[DictRow], cursor: object | None,
               everything: bool) -> tuple[list[DictRow], TxCursor]:
    """The new rows of a `since_query` and the reader's next cursor."""
    xmin = int(rows[0]["snapshot_xmin"])
    present = [r for r in rows if r["id"] is not None]
    seen = frozenset(r["id"] for r in present if int(r["row_tx"]) >= xmin)
    if not isinstance(cursor, TxCursor):
        if not everything:
            return [], TxCursor(xmin, seen)   # a new reader starts at the end
        return present, TxCursor(xmin, seen)
    return [r for r in present if r["id"] not in cursor.seen], TxCursor(xmin, seen)


class ChangeFeed:
    """Statement-level triggers `pg_notify`; `token()` drains a LISTEN connection without
    blocking, falls back to "always changed" (polling) while that connection is down, and
    changes after every reconnect (notifications sent meanwhile are lost)."""

    def __init__(self, url: str, connect_timeout_s: float) -> None:
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self.listen: psycopg.Connection[Any] | None = None
        self._retry_at = 0.0
        self._generation = 0       # bumped on every (re)connect of the listener
        self._notified = 0
        self._polls = 0

    def _listener(self) -> psycopg.Connection[Any] | None:
        if self.listen is not None and not self.listen.closed:
            return self.listen
        if time.monotonic() < self._retry_at:
            return None
        conn = None
        try:
            conn = psycopg.connect(self.url, autocommit=True,
                                   application_name="optical-tui listener",
                                   connect_timeout=max(1, round(self.connect_timeout_s)))
            conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error:
            if conn is not None:
                conn.close()
            self._retry_at = time.monotonic() + 2.0   # poll meanwhile; try again in 2 s
            return None
        self.listen = conn
        self._generation += 1   # anything committed while we did not listen: read again
        return conn

    def token(self) -> object:
        for _ in range(2):   # a listener found dead is reopened at once (a new generation)
            listener = self._listener()
            if listener is None:
                break
            try:
                for _ in listener.notifies(timeout=0):
                    self._notified += 1
                return (self._generation, self._notified)
            except psycopg.Error:
                listener.close()
                self.listen = None
        # Polling fallback while the LISTEN connection is down: report a change on every call.
        self._polls += 1
        return ("polling", self._polls)

    def close(self) -> None:
        if self.listen is not None:
            self.listen.close()
        self.listen = None
