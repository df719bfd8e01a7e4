"""The builtin adapter's durable store (spec/modules.md §6.5): jobs (waiting or
dead-lettered) and topic backlogs.

With ``file_based`` every change is written through to SQLite (a
:class:`~iii_trio.runtime.modules.storage.sqlite.SqliteDatabase`) before the caller is
answered, so an acknowledged enqueue survives a crash, and a job that was being delivered at
the crash is simply waiting again after the restart (at least once). With ``in_memory`` the
store keeps nothing: the adapter's own lists are all there is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import orjson

from iii_trio.runtime.modules.queue.jobs import Job, Trace
from iii_trio.runtime.modules.storage.sqlite import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, body TEXT NOT NULL, dead INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS backlog (message_id TEXT PRIMARY KEY, topic TEXT NOT NULL,
                                    data TEXT NOT NULL, traceparent TEXT, baggage TEXT);
"""
#: Columns added since the first schema, added to a database made before them.
ADDED_COLUMNS = {"backlog": ("traceparent TEXT", "baggage TEXT")}


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """A database written by an older build gains the columns added since (NULL in old rows)."""
    for table, columns in ADDED_COLUMNS.items():
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for column in columns:
            if column.split()[0] not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


def _body(job: Job) -> str:
    return orjson.dumps(attrs.asdict(job)).decode()


class JobStore:
    """Written through to SQLite (``db``), or in memory only (``db`` None)."""

    def __init__(self, db: SqliteDatabase | None) -> None:
        self._db = db

    @classmethod
    async def open(cls, file_path: str | None) -> JobStore:
        """The store of the database at ``file_path``; in memory only when None."""
        if file_path is None:
            return cls(None)
        db = await SqliteDatabase.open(file_path, SCHEMA)
        await db.transaction(_add_missing_columns)
        return cls(db)

    async def _write(self, operation: Callable[[sqlite3.Connection], Any]) -> None:
        if self._db is not None:
            await self._db.transaction(operation)

    async def save(self, *jobs: Job, dropping: Sequence[Job] = ()) -> None:
        """Write ``jobs`` and delete ``dropping`` (dead letters beyond the cap), one commit."""
        rows = [(job.id, _body(job), int(job.error is not None)) for job in jobs]
        gone = [(job.id,) for job in dropping]

        def operation(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR REPLACE INTO jobs (id, body, dead) VALUES (?, ?, ?)", rows)
            if gone:
                db.executemany("DELETE FROM jobs WHERE id = ?", gone)

        await self._write(operation)

    async def delete(self, *jobs: Job) -> None:
        gone = [(job.id,) for job in jobs]
        await self._write(lambda db: db.executemany("DELETE FROM jobs WHERE id = ?", gone))

    async def hold(self, topic: str, message_id: str, data: Any, trace: Trace) -> None:
        row = (message_id, topic, orjson.dumps(data).decode(), trace.traceparent, trace.baggage)
        await self._write(
            lambda db: db.execute(
                "INSERT INTO backlog (message_id, topic, data, traceparent, baggage)"
                " VALUES (?, ?, ?, ?, ?)",
                row,
            )
        )

    async def release_backlog(self, message_ids: Sequence[str], jobs: list[Job]) -> None:
        """Replace held messages by the jobs made from them, in one commit (by message id:
        a message of the topic still being held by a concurrent enqueue stays held)."""
        rows = [(job.id, _body(job), 0) for job in jobs]
        held = [(message_id,) for message_id in message_ids]

        def operation(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM backlog WHERE message_id = ?", held)
            db.executemany("INSERT INTO jobs (id, body, dead) VALUES (?, ?, ?)", rows)

        await self._write(operation)

    async def load(self) -> tuple[list[Job], list[tuple[str, str, Any, Trace]]]:
        """Every stored job, and the backlog as (topic, message_id, data, trace), oldest
        first."""
        if self._db is None:
            return [], []

        def read(db: sqlite3.Connection) -> tuple[list[Job], list[tuple[str, str, Any, Trace]]]:
            jobs = [
                Job(**orjson.loads(body))
                for (body,) in db.execute("SELECT body FROM jobs ORDER BY rowid")
            ]
            backlog = [
                (topic, message_id, orjson.loads(data), Trace(traceparent, baggage))
                for topic, message_id, data, traceparent, baggage in db.execute(
                    "SELECT topic, message_id, data, traceparent, baggage FROM backlog"
                    " ORDER BY rowid"
                )
            ]
            return jobs, backlog

        return await self._db.read(read)

    async def aclose(self) -> None:
        if self._db is not None:
            await self._db.aclose()
