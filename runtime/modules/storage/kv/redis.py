"""The Redis key-value store (the state and stream modules' RedisAdapter): scopes are
hashes, every write one Lua script, so engines sharing one Redis share the data."""

from __future__ import annotations

from typing import Any

import orjson
import trio

from iii_trio.runtime.modules.storage.kv import Update
from iii_trio.runtime.modules.storage.redis import Arg, Commands, RedisError, Script

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
