"""The SQLite key-value store (``store_method: file_based``): one table of (scope, key,
value JSON) on a :class:`~iii_trio.runtime.modules.storage.sqlite.SqliteDatabase`, so every
write is committed before its call returns."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from iii_trio.runtime.modules.storage.kv import Update
from iii_trio.runtime.modules.storage.sqlite import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS state_scope_key ON state (scope, key);
"""


class SqliteStore:
    """Rows keep their insertion order by rowid. Every operation, reads included, is one
    :meth:`~iii_trio.runtime.modules.storage.sqlite.SqliteDatabase.transaction`."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    @classmethod
    async def open(cls, file_path: str) -> SqliteStore:
        return cls(await SqliteDatabase.open(file_path, SCHEMA))

    @staticmethod
    def _read(db: sqlite3.Connection, scope: str, key: str) -> tuple[bool, Any]:
        row = db.execute("SELECT value FROM state WHERE scope=? AND key=?", (scope, key)).fetchone()
        return (False, None) if row is None else (True, orjson.loads(row[0]))

    @staticmethod
    def _write(db: sqlite3.Connection, scope: str, key: str, value: Any) -> None:
        db.execute(
            "INSERT INTO state (scope, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value",
            (scope, key, orjson.dumps(value).decode()),
        )

    async def get(self, scope: str, key: str) -> tuple[bool, Any]:
        return await self._db.transaction(lambda db: self._read(db, scope, key))

    async def set(self, scope: str, key: str, value: Any) -> Any:
        def operation(db: sqlite3.Connection) -> Any:
            _, old = self._read(db, scope, key)
            self._write(db, scope, key, value)
            return old

        return await self._db.transaction(operation)

    async def delete(self, scope: str, key: str) -> tuple[bool, Any]:
        def operation(db: sqlite3.Connection) -> tuple[bool, Any]:
            found = self._read(db, scope, key)
            if found[0]:
                db.execute("DELETE FROM state WHERE scope=? AND key=?", (scope, key))
            return found

        return await self._db.transaction(operation)

    async def update(self, scope: str, key: str, change: Update) -> tuple[Any, Any]:
        def operation(db: sqlite3.Connection) -> tuple[Any, Any]:
            _, old = self._read(db, scope, key)
            new = change(old)
            self._write(db, scope, key, new)
            return old, new

        return await self._db.transaction(operation)

    async def values(self, scope: str) -> list[Any]:
        def operation(db: sqlite3.Connection) -> list[Any]:
            rows = db.execute("SELECT value FROM state WHERE scope=? ORDER BY rowid", (scope,))
            return [orjson.loads(value) for (value,) in rows]

        return await self._db.transaction(operation)

    async def scopes(self) -> list[str]:
        def operation(db: sqlite3.Connection) -> list[str]:
            rows = db.execute("SELECT DISTINCT scope FROM state ORDER BY scope")
            return [scope for (scope,) in rows]

        return await self._db.transaction(operation)

    async def scope_sizes(self) -> dict[str, int]:
        def operation(db: sqlite3.Connection) -> dict[str, int]:
            rows = db.execute("SELECT scope, COUNT(*) FROM state GROUP BY scope")
            return {scope: count for (scope, count) in rows}

        return await self._db.transaction(operation)

    def counts(self) -> None:
        return None  # counting means a query on the writer thread: not for a sync snapshot

    async def aclose(self) -> None:
        await self._db.aclose()
