"""The OCPP link's own SQLite file: transaction messages waiting to be sent,
which session each transaction is, and the configuration the central system set.

A file of its own next to the edge store (`<data_dir>/<shed>-ocpp.sqlite`),
not tables in it: see docs/decisions/0011-ocpp-link.md.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    action TEXT NOT NULL,            -- StartTransaction, MeterValues, StopTransaction
    payload TEXT NOT NULL,           -- keyword arguments of ocpp.v16.call.<action>, JSON
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS transactions (
    session_id TEXT PRIMARY KEY,
    connector INTEGER NOT NULL,
    id_tag TEXT NOT NULL,
    meter_start INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    transaction_id INTEGER,          -- given by the central system's StartTransaction answer
    stop_queued INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0  -- StopTransaction answered (or given up)
);
CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Message:
    seq: int
    session_id: str
    action: str
    payload: dict[str, Any]
    attempts: int
    not_before_ms: int


@dataclass(frozen=True, slots=True)
class Transaction:
    session_id: str
    connector: int
    id_tag: str
    meter_start: int
    started_ms: int
    transaction_id: int | None
    stop_queued: bool
    done: bool


class OcppStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)  # each `with self.db:` block is one transaction
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # ---- transactions and their messages ---------------------------------

    def open_transaction(self, t: Transaction, payload: dict[str, Any]) -> bool:
        """Record a session's transaction and queue its StartTransaction, once."""
        with self.db:
            cur = self.db.execute(
                "INSERT OR IGNORE INTO transactions (session_id, connector, id_tag, meter_start,"
                " started_ms) VALUES (?, ?, ?, ?, ?)",
                (t.session_id, t.connector, t.id_tag, t.meter_start, t.started_ms),
            )
            if cur.rowcount == 0:
                return False
            self._enqueue(t.session_id, "StartTransaction", payload)
        return True

    def queue(self, session_id: str, action: str, payload: dict[str, Any]) -> None:
        with self.db:
            self._enqueue(session_id, action, payload)

    def queue_stop(self, session_id: str, payload: dict[str, Any]) -> bool:
        """Queue the StopTransaction of a session, once."""
        with self.db:
            cur = self.db.execute(
                "UPDATE transactions SET stop_queued = 1 WHERE session_id = ? AND stop_queued = 0",
                (session_id,),
            )
            if cur.rowcount == 0:
                return False
            self._enqueue(session_id, "StopTransaction", payload)
        return True

    def _enqueue(self, session_id: str, action: str, payload: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO messages (session_id, action, payload) VALUES (?, ?, ?)",
            (session_id, action, json.dumps(payload, separators=(",", ":"))),
        )

    def head(self) -> Message | None:
        row = self.db.execute(
            "SELECT seq, session_id, action, payload, attempts, not_before_ms FROM messages"
            " ORDER BY seq LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return Message(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5])

    def depth(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM messages").fetchone()[0])

    def delivered(self, msg: Message, transaction_id: int | None = None) -> None:
        """A message the central system answered: gone from the queue; a Start binds
        its transactionId to its session, a Stop ends the transaction."""
        with self.db:
            self.db.execute("DELETE FROM messages WHERE seq = ?", (msg.seq,))
            if msg.action == "StartTransaction" and transaction_id is not None:
                self.db.execute(
                    "UPDATE transactions SET transaction_id = ? WHERE session_id = ?",
                    (transaction_id, msg.session_id),
                )
            elif msg.action == "StopTransaction":
                self.db.execute(
                    "UPDATE transactions SET done = 1 WHERE session_id = ?", (msg.session_id,)
                )

    def refused(self, msg: Message, not_before_ms: int) -> None:
        with self.db:
            self.db.execute(
                "UPDATE messages SET attempts = attempts + 1, not_before_ms = ? WHERE seq = ?",
                (not_before_ms, msg.seq),
            )

    def drop_session(self, session_id: str) -> int:
        """Give a transaction up (its Start was refused too often): every message of it goes."""
        with self.db:
            n = self.db.execute("DELETE FROM messages WHERE session_id = ?", (session_id,)).rowcount
            self.db.execute(
                "UPDATE transactions SET done = 1, stop_queued = 1 WHERE session_id = ?",
                (session_id,),
            )
        return int(n)

    def transaction(self, session_id: str) -> Transaction | None:
        row = self.db.execute(
            "SELECT session_id, connector, id_tag, meter_start, started_ms, transaction_id,"
            " stop_queued, done FROM transactions WHERE session_id = ?",
            (session_id,),
        ).fetchone()
        return _transaction(row) if row is not None else None

    def by_transaction_id(self, transaction_id: int) -> Transaction | None:
        row = self.db.execute(
            "SELECT session_id, connector, id_tag, meter_start, started_ms, transaction_id,"
            " stop_queued, done FROM transactions WHERE transaction_id = ? AND done = 0",
            (transaction_id,),
        ).fetchone()
        return _transaction(row) if row is not None else None

    def unstopped(self) -> list[Transaction]:
        rows = self.db.execute(
            "SELECT session_id, connector, id_tag, meter_start, started_ms, transaction_id,"
            " stop_queued, done FROM transactions WHERE stop_queued = 0"
        ).fetchall()
        return [_transaction(r) for r in rows]

    # ---- configuration ------------------------------------------------------

    def config(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM config").fetchall())

    def set_config(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO config (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


def _transaction(row: tuple[Any, ...]) -> Transaction:
    return Transaction(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), bool(row[7]))
