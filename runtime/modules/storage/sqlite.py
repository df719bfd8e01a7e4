"""One SQLite database of a module, written by one thread (the state, stream and queue stores).

The durability promise every SQLite-backed store makes: a write is committed before its call
returns, so a ``kill -9`` after the reply loses nothing. The database runs in WAL mode with
``synchronous=NORMAL``: a power cut may lose the last commits, a process crash cannot.

Every operation runs in a worker thread (the event loop never waits on the disk) through a
limiter of one, so operations of one database never interleave and each
:meth:`SqliteDatabase.transaction` is applied start to commit before the next begins.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio

T = TypeVar("T")

#: The file created inside a directory given as ``file_path`` (the reference's name).
DEFAULT_DB_NAME = "kv_store_data.db"


def database_path(file_path: str) -> Path:
    """``file_path`` names the database, or an existing directory to create it in."""
    path = Path(file_path)
    if path.is_dir():
        return path / DEFAULT_DB_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class SqliteDatabase:
    """A connection in autocommit mode (``isolation_level=None``): transactions are only the
    explicit ``BEGIN IMMEDIATE`` ... ``COMMIT`` of :meth:`transaction`."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(schema)
        self._writer = trio.CapacityLimiter(1)  # one operation at a time, start to commit

    @classmethod
    async def open(cls, file_path: str, schema: str) -> SqliteDatabase:
        """Open (or create) the database ``file_path`` names and apply ``schema`` (idempotent
        statements: ``CREATE ... IF NOT EXISTS``)."""
        return await trio.to_thread.run_sync(cls, database_path(file_path), schema)

    async def transaction(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """``operation(connection)`` inside ``BEGIN IMMEDIATE`` / ``COMMIT``, rolled back if it
        raises; its result once committed. ``IMMEDIATE`` takes the write lock at the start: a
        read-then-write operation waits there for another connection to the same file (a
        second module sharing it) instead of failing when its read turns into a write."""
        return await trio.to_thread.run_sync(self._transaction, operation, limiter=self._writer)

    def _transaction(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            result = operation(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    async def read(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """``operation(connection)`` on the writer thread without a transaction of its own
        (each statement sees a consistent snapshot); for reads such as loading at startup."""
        return await trio.to_thread.run_sync(operation, self._db, limiter=self._writer)

    async def aclose(self) -> None:
        """Close after the operation under way (a later one fails with ``sqlite3.Error``)."""
        await trio.to_thread.run_sync(self._db.close, limiter=self._writer)
