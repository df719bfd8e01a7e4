"""Where ``state::*`` keeps its values: in memory, SQLite or Redis (spec/modules.md §4.2, D7).

Each store is the single writer of its data, so concurrent calls never interleave inside
one operation: the memory store because trio runs one task at a time and no operation
awaits in the middle, the SQLite store because every operation runs, start to commit, in
one worker thread through a limiter of one. ``update`` receives a pure function (old value
→ new value) and applies it inside that single step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import orjson
import trio

from iii_trio.runtime.modules.storage.redis import Arg, Commands, RedisError, Script

Update = Callable[[Any], Any]  # old value (None when missing) -> new value

# What a store raises when it cannot do its work (the modules answer their error codes).
STORE_ERRORS = (sqlite3.Error, RedisError, OSError)


class KvStore(Protocol):
    async def get(self, scope: str, key: str) -> tuple[bool, Any]: ...

    async def set(self, scope: str, key: str, value: Any) -> Any:
        """Store ``value``; the previous value, or None."""

    async def delete(self, scope: str, key: str) -> tuple[bool, Any]: ...

    async def update(self, scope: str, key: str, change: Update) -> tuple[Any, Any]:
        """Apply ``change`` atomically; (old or None, new)."""

    async def values(self, scope: str) -> list[Any]:
        """The scope's values in insertion order."""

    async def scopes(self) -> list[str]:
        """Scopes holding at least one key, sorted."""

    async def scope_sizes(self) -> dict[str, int]:
        """Number of keys of every non-empty scope."""

    def counts(self) -> dict[str, int] | None:
        """Scopes and keys, if the store can count them without I/O; else None."""

    async def aclose(self) -> None: ...


class MemoryStore:
    """Scopes of keys in dicts (insertion ordered); gone when the engine stops."""

    def __init__(self) -> None:
        self._scopes: dict[str, dict[str, Any]] = {}

    async def get(self, scope: str, key: str) -> tuple[bool, Any]:
        values = self._scopes.get(scope, {})
        return (key in values), values.get(key)

    async def set(self, scope: str, key: str, value: Any) -> Any:
        values = self._scopes.setdefault(scope, {})
        old = values.get(key)
        values[key] = value
        return old

    async def delete(self, scope: str, key: str) -> tuple[bool, Any]:
        values = self._scopes.get(scope)
        if values is None or key not in values:
            return False, None
        old = values.pop(key)
        if not values:
            del self._scopes[scope]  # emptied scopes leave list_groups at once
        return True, old

    async def update(self, scope: str, key: str, change: Update) -> tuple[Any, Any]:
        values = self._scopes.setdefault(scope, {})
        old = values.get(key)
        new = values[key] = change(old)
        return old, new

    async def values(self, scope: str) -> list[Any]:
        return list(self._scopes.get(scope, {}).values())

    async def scopes(self) -> list[str]:
        return sorted(self._scopes)

    async def scope_sizes(self) -> dict[str, int]:
        return {scope: len(values) for scope, values in self._scopes.items()}

    def counts(self) -> dict[str, int]:
        return {"scopes": len(self._scopes), "keys": sum(map(len, self._scopes.values()))}

    async def aclose(self) -> None:
        pass


DEFAULT_DB_NAME = "kv_store_data.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS state_scope_key ON state (scope, key);
"""


def database_path(file_path: str) -> Path:
    """``file_path`` names the database, or an existing directory to create it in."""
    path = Path(file_path)
    if path.is_dir():
        return path / DEFAULT_DB_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class SqliteStore:
    """SQLite in WAL mode. A write is committed before its call returns, so a ``kill -9``
    after the reply loses nothing (``synchronous=NORMAL``: a power cut may lose the last
    commits, a process crash cannot). Rows keep their insertion order by rowid."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._writer = trio.CapacityLimiter(1)  # one operation at a time, start to commit

    @classmethod
    async def open(cls, file_path: str) -> SqliteStore:
        return await trio.to_thread.run_sync(cls, database_path(file_path))

    async def _run(self, operation: Callable[[sqlite3.Connection], Any]) -> Any:
        return await trio.to_thread.run_sync(self._transaction, operation, limiter=self._writer)

    def _transaction(self, operation: Callable[[sqlite3.Connection], Any]) -> Any:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            result = operation(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

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
        found: tuple[bool, Any] = await self._run(lambda db: self._read(db, scope, key))
        return found

    async def set(self, scope: str, key: str, value: Any) -> Any:
        def operation(db: sqlite3.Connection) -> Any:
            _, old = self._read(db, scope, key)
            self._write(db, scope, key, value)
            return old

        return await self._run(operation)

    async def delete(self, scope: str, key: str) -> tuple[bool, Any]:
        def operation(db: sqlite3.Connection) -> tuple[bool, Any]:
            found = self._read(db, scope, key)
            if found[0]:
                db.execute("DELETE FROM state WHERE scope=? AND key=?", (scope, key))
            return found

        deleted: tuple[bool, Any] = await self._run(operation)
        return deleted

    async def update(self, scope: str, key: str, change: Update) -> tuple[Any, Any]:
        def operation(db: sqlite3.Connection) -> tuple[Any, Any]:
            _, old = self._read(db, scope, key)
            new = change(old)
            self._write(db, scope, key, new)
            return old, new

        updated: tuple[Any, Any] = await self._run(operation)
        return updated

    async def values(self, scope: str) -> list[Any]:
        def operation(db: sqlite3.Connection) -> list[Any]:
            rows = db.execute("SELECT value FROM state WHERE scope=? ORDER BY rowid", (scope,))
            return [orjson.loads(value) for (value,) in rows]

        values: list[Any] = await self._run(operation)
        return values

    async def scopes(self) -> list[str]:
        def operation(db: sqlite3.Connection) -> list[str]:
            rows = db.execute("SELECT DISTINCT scope FROM state ORDER BY scope")
            return [scope for (scope,) in rows]

        groups: list[str] = await self._run(operation)
        return groups

    async def scope_sizes(self) -> dict[str, int]:
        def operation(db: sqlite3.Connection) -> dict[str, int]:
            rows = db.execute("SELECT scope, COUNT(*) FROM state GROUP BY scope")
            return {scope: count for (scope, count) in rows}

        sizes: dict[str, int] = await self._run(operation)
        return sizes

    def counts(self) -> None:
        return None  # counting means a query on the writer thread: not for a sync snapshot

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self._db.close, limiter=self._writer)


# Every write is one Lua script, so it is atomic on the server against every engine that
# shares the Redis. KEYS: the scope's hash, its order zset, the scopes set, the sequence
# counter; ARGV: the key, the value's JSON, the scope (and, for a compare-and-set, the JSON
# text the value must still have, "" for missing: never valid JSON, so it cannot collide).
_WRITE = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not old then
  redis.call('ZADD', KEYS[2], 'NX', redis.call('INCR', KEYS[4]), ARGV[1])
  redis.call('SADD', KEYS[3], ARGV[3])
end
"""
_SET = Script("local old = redis.call('HGET', KEYS[1], ARGV[1])" + _WRITE + "return old")
_COMPARE_AND_SET = Script(
    "local old = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if (old or '') ~= ARGV[4] then return 0 end" + _WRITE + "return 1"
)
_DELETE = Script("""
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  if redis.call('HLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[2]) end
end
return old
""")
# An update reads, applies its operations here, then writes only if nobody changed the value
# meanwhile; another engine's write in between means read and apply again, up to this often.
MAX_UPDATE_ATTEMPTS = 100
KEY_LOCK_STRIPES = 256


class RedisStore:
    """One hash per scope (``state:<scope>``, field = key, value = JSON text), as the
    reference lays it out, plus what the spec's results need: a sorted set per scope for
    insertion order (``state:<scope>:order``) and the set of non-empty scopes
    (``state:scopes``). ``prefix`` replaces ``state`` in every key name (the StreamModule
    uses ``stream``).

    Writes are Lua scripts (atomic across engines); ``update`` is a compare-and-set loop, so
    engines sharing one Redis never lose each other's increments. Within this engine, writes
    to one key take turns on a striped lock: they do not spin against each other, and their
    results (and the events the modules emit right after, with no checkpoint in between)
    come in the order the writes were applied."""

    def __init__(self, redis: Commands, *, prefix: str = "state") -> None:
        self._redis = redis
        self._prefix = prefix
        self._key_locks = [trio.Lock() for _ in range(KEY_LOCK_STRIPES)]

    def _hash(self, scope: str) -> str:
        return f"{self._prefix}:{scope}"

    def _keys(self, scope: str) -> list[Arg]:
        hash_key = self._hash(scope)
        return [hash_key, f"{hash_key}:order", f"{self._prefix}:scopes", f"{self._prefix}:seq"]

    def _lock(self, scope: str, key: str) -> trio.Lock:
        return self._key_locks[hash((scope, key)) % KEY_LOCK_STRIPES]

    async def get(self, scope: str, key: str) -> tuple[bool, Any]:
        raw = await self._redis.execute("HGET", self._hash(scope), key)
        return (False, None) if raw is None else (True, orjson.loads(raw))

    async def set(self, scope: str, key: str, value: Any) -> Any:
        async with self._lock(scope, key):
            old = await _SET(self._redis, self._keys(scope), [key, orjson.dumps(value), scope])
            return None if old is None else orjson.loads(old)

    async def delete(self, scope: str, key: str) -> tuple[bool, Any]:
        async with self._lock(scope, key):
            old = await _DELETE(self._redis, self._keys(scope), [key, scope])
            return (False, None) if old is None else (True, orjson.loads(old))

    async def update(self, scope: str, key: str, change: Update) -> tuple[Any, Any]:
        async with self._lock(scope, key):
            for _ in range(MAX_UPDATE_ATTEMPTS):
                raw = await self._redis.execute("HGET", self._hash(scope), key)
                old = None if raw is None else orjson.loads(raw)
                new = change(old)
                args: list[Arg] = [key, orjson.dumps(new), scope, raw or b""]
                if await _COMPARE_AND_SET(self._redis, self._keys(scope), args):
                    return old, new
        raise RedisError(
            f"{scope}/{key} changed under every one of {MAX_UPDATE_ATTEMPTS} attempts "
            "(other engines writing it)"
        )

    async def values(self, scope: str) -> list[Any]:
        keys = await self._redis.execute("ZRANGE", f"{self._hash(scope)}:order", 0, -1)
        if not keys:
            return []
        raws = await self._redis.execute("HMGET", self._hash(scope), *keys)
        return [orjson.loads(raw) for raw in raws if raw is not None]

    async def scopes(self) -> list[str]:
        members = await self._redis.execute("SMEMBERS", f"{self._prefix}:scopes")
        return sorted(member.decode() for member in members)

    async def scope_sizes(self) -> dict[str, int]:
        scopes = await self.scopes()
        if not scopes:
            return {}
        sizes = await self._redis.execute_many([["HLEN", self._hash(s)] for s in scopes])
        return {scope: size for scope, size in zip(scopes, sizes, strict=True) if size}

    def counts(self) -> None:
        return None  # counting means round trips to Redis

    async def aclose(self) -> None:
        pass  # the connection belongs to the module, which closes it
