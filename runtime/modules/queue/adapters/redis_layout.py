"""How the queue's RedisAdapter lays jobs out in Redis (see :mod:`.redis`): key
names, the Lua scripts that change them, and the encoding of a job in its stream entry.

Every step that touches more than one key runs as one script, so engines sharing a Redis
never see half of it (an enqueue racing a first subscription, two engines redriving one
dead letter). Scripts read the time from Redis (``TIME``), never from an engine, so the
engines' clocks need not agree. Scripts build some key names themselves (the streams of a
fan-out): the adapter needs a standalone Redis, not Redis Cluster.

Names are escaped (``%`` -> ``%25``, ``:`` -> ``%3A``) so a queue and a function id can
never run together into another pair's key.
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson
import trio

from iii_trio.runtime.modules.queue.jobs import Job
from iii_trio.runtime.modules.queue.streams import Stream
from iii_trio.runtime.modules.storage.redis import Script

GROUP = "iii"  # the one consumer group of every job stream


def escape(name: str) -> str:
    return name.replace("%", "%25").replace(":", "%3A")


class QueueKeys:
    """Keys of one queue (a topic or a named queue)."""

    def __init__(self, queue: str) -> None:
        base = f"queue:{escape(queue)}"
        self.subs = f"{base}:subs"  # ZSET "<engine> <function id>" -> expiry (ms)
        self.backlog = f"{base}:backlog"  # LIST of messages nobody was subscribed to
        self.functions = f"{base}:functions"  # SET of function ids with a job stream
        self.dlq = f"{base}:dlq"  # HASH "<message id> <function id>" -> DLQ entry JSON
        self.dlq_order = f"{base}:dlq:order"  # ZSET of the same fields -> failed_at


class StreamKeys:
    """Keys of one (queue, function) job stream."""

    def __init__(self, queue: str, function_id: str) -> None:
        base = f"queue:{escape(queue)}:{escape(function_id)}"
        self.jobs = f"{base}:jobs"  # STREAM of {m: message JSON, a: attempts made}
        self.delayed = f"{base}:delayed"  # ZSET "<attempts> <message JSON>" -> due (ms)
        self.owner = f"{base}:owner"  # FIFO: the engine consuming the stream (PX lease)
        self.attempts = f"{base}:attempts"  # FIFO: entry id -> attempts of an inline retry


_PRELUDE = r"""
local GROUP = 'iii'
local function esc(s)
  return (string.gsub(s, '[%%:]', {['%'] = '%25', [':'] = '%3A'}))
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function ensure_group(key)
  if redis.call('EXISTS', key) == 0 then
    redis.call('XGROUP', 'CREATE', key, GROUP, '0', 'MKSTREAM')
  end
end
local function stream_key(queue, fn, suffix)
  return 'queue:' .. esc(queue) .. ':' .. esc(fn) .. ':' .. suffix
end
local function add_job(queue, fn, message)
  local key = stream_key(queue, fn, 'jobs')
  ensure_group(key)
  redis.call('XADD', key, '*', 'm', message, 'a', 0)
  redis.call('SADD', 'queue:' .. esc(queue) .. ':functions', fn)
end
local function live_functions(subs, now)
  redis.call('ZREMRANGEBYSCORE', subs, '-inf', now)
  local seen, fns = {}, {}
  for _, member in ipairs(redis.call('ZRANGE', subs, 0, -1)) do
    local fn = string.match(member, '^%S+ (.*)$')
    if fn and not seen[fn] then
      seen[fn] = true
      fns[#fns + 1] = fn
    end
  end
  return fns
end
"""


def _script(body: str) -> Script:
    return Script(_PRELUDE + body)


# KEYS subs, backlog; ARGV topic, message, max jobs per stream, max backlog.
# One job per live subscribed function, or the message held: the number of jobs made.
ENQUEUE_TOPIC = _script(r"""
local fns = live_functions(KEYS[1], now_ms())
if #fns == 0 then
  if redis.call('LLEN', KEYS[2]) >= tonumber(ARGV[4]) then
    return redis.error_reply('QUEUE_FULL ' .. ARGV[4] .. ' messages wait for a subscriber')
  end
  redis.call('RPUSH', KEYS[2], ARGV[2])
  return 0
end
for _, fn in ipairs(fns) do
  local depth = redis.call('XLEN', stream_key(ARGV[1], fn, 'jobs'))
    + redis.call('ZCARD', stream_key(ARGV[1], fn, 'delayed'))
  if depth >= tonumber(ARGV[3]) then
    return redis.error_reply('QUEUE_FULL ' .. ARGV[3] .. ' jobs wait for ' .. fn)
  end
end
for _, fn in ipairs(fns) do add_job(ARGV[1], fn, ARGV[2]) end
return #fns
""")

# KEYS subs, backlog; ARGV topic, member "<engine> <function id>", ttl ms.
# Subscribe (or renew), then fan the backlog out: the number of messages released.
SUBSCRIBE = _script(r"""
local now = now_ms()
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
local messages = redis.call('LRANGE', KEYS[2], 0, -1)
if #messages == 0 then return 0 end
local fns = live_functions(KEYS[1], now)
for _, message in ipairs(messages) do
  for _, fn in ipairs(fns) do add_job(ARGV[1], fn, message) end
end
redis.call('DEL', KEYS[2])
return #messages
""")

# KEYS jobs, delayed, functions; ARGV message, function id, max jobs per stream.
ENQUEUE_NAMED = _script(r"""
if redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  return redis.error_reply('QUEUE_FULL ' .. ARGV[3] .. ' jobs are waiting')
end
ensure_group(KEYS[1])
local id = redis.call('XADD', KEYS[1], '*', 'm', ARGV[1], 'a', 0)
redis.call('SADD', KEYS[3], ARGV[2])
return id
""")

# KEYS jobs, delayed, attempts, dlq order; ARGV consumer, count, claim idle ms (-1: none),
# promote limit, claim cursor. Moves due retries into the stream, claims entries idle
# longer than the lease (their consumer crashed or hung), then reads new ones (while a
# claiming pass is under way only once it went round, so older entries come first).
# Returns {entries, FIFO attempts per entry, ms until the next retry is due (-1: none),
# stream length, retries waiting, next claim cursor, dead letters of the queue}.
FETCH = _script(r"""
local now = now_ms()
ensure_group(KEYS[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
for _, member in ipairs(due) do
  local space = string.find(member, ' ', 1, true)
  redis.call('XADD', KEYS[1], '*', 'm', string.sub(member, space + 1),
             'a', string.sub(member, 1, space - 1))
  redis.call('ZREM', KEYS[2], member)
end
local count = tonumber(ARGV[2])
local entries = {}
local cursor = '0-0'
if tonumber(ARGV[3]) >= 0 then
  local claimed = redis.call('XAUTOCLAIM', KEYS[1], GROUP, ARGV[1], ARGV[3], ARGV[5],
                             'COUNT', count)
  cursor = claimed[1]
  for _, entry in ipairs(claimed[2]) do
    if entry and entry[2] then entries[#entries + 1] = entry end
  end
end
if #entries < count and (tonumber(ARGV[3]) ~= 0 or cursor == '0-0') then
  local read = redis.call('XREADGROUP', 'GROUP', GROUP, ARGV[1], 'COUNT', count - #entries,
                          'STREAMS', KEYS[1], '>')
  if read then
    for _, entry in ipairs(read[1][2]) do entries[#entries + 1] = entry end
  end
end
local attempts = {}
for i, entry in ipairs(entries) do
  attempts[i] = redis.call('HGET', KEYS[3], entry[1]) or ''
end
local wait = -1
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #first > 0 then wait = math.max(0, tonumber(first[2]) - now) end
return {entries, attempts, wait, redis.call('XLEN', KEYS[1]), redis.call('ZCARD', KEYS[2]),
        cursor, redis.call('ZCARD', KEYS[4])}
""")

# KEYS jobs, attempts; ARGV entry id. The job was handled: gone for good.
ACK = _script(r"""
redis.call('XACK', KEYS[1], GROUP, ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('XDEL', KEYS[1], ARGV[1])
""")

# KEYS jobs, delayed; ARGV entry id, member "<attempts> <message JSON>", delay ms.
# 0 when the entry was settled meanwhile (another engine claimed and finished it).
RETRY = _script(r"""
if redis.call('XACK', KEYS[1], GROUP, ARGV[1]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[3]), ARGV[2])
return 1
""")

# KEYS jobs, attempts, dlq, dlq order; ARGV entry id, field, entry JSON, failed_at, max DLQ.
# The number of older dead letters evicted to stay within the cap; -1 when settled meanwhile.
DEAD = _script(r"""
if redis.call('XACK', KEYS[1], GROUP, ARGV[1]) == 0 then return -1 end
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[2])
local evicted = 0
while redis.call('ZCARD', KEYS[4]) > tonumber(ARGV[5]) do
  local oldest = redis.call('ZPOPMIN', KEYS[4])
  redis.call('HDEL', KEYS[3], oldest[1])
  evicted = evicted + 1
end
return evicted
""")

# KEYS dlq, dlq order, jobs, functions; ARGV field, message, function id.
# 1 when this call moved the dead letter back (0: gone already, e.g. redriven elsewhere).
REDRIVE = _script(r"""
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
ensure_group(KEYS[3])
redis.call('XADD', KEYS[3], '*', 'm', ARGV[2], 'a', 0)
redis.call('SADD', KEYS[4], ARGV[3])
return 1
""")

# KEYS jobs; ARGV consumer, idle ms, entry ids... For each entry still pending on this
# consumer, set its idle time: 0 renews the lease, a huge value hands it back at once.
TOUCH = _script(r"""
local n = 0
for i = 3, #ARGV do
  local mine = redis.call('XPENDING', KEYS[1], GROUP, ARGV[i], ARGV[i], 1, ARGV[1])
  if #mine > 0 then
    redis.call('XCLAIM', KEYS[1], GROUP, ARGV[1], 0, ARGV[i], 'IDLE', ARGV[2], 'JUSTID')
    n = n + 1
  end
end
return n
""")

# KEYS owner; ARGV engine, ttl ms. 2: newly owned, 1: renewed, 0: another engine owns it.
OWN = _script(r"""
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if current then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 2
""")

# KEYS owner; ARGV engine.
DISOWN = _script(r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")


# --- a job in its stream entry -----------------------------------------------------------


@attrs.define(eq=False)
class RedisJob(Job):
    entry_id: str = ""  # the stream entry this delivery came from


class RedisStream(Stream):
    """A stream and what this engine holds of it in Redis."""

    def __init__(self, queue: str, function_id: str, *, concurrency: int, fifo: bool) -> None:
        super().__init__(queue, function_id, concurrency=concurrency, fifo=fifo)
        self.keys = StreamKeys(queue, function_id)
        self.held: dict[str, RedisJob] = {}  # entry id -> job, waiting here or in flight
        self.wake = trio.Event()
        self.cursor = "0-0"  # where the next XAUTOCLAIM scan starts
        self.depth = 0  # entries in the stream (waiting anywhere or in flight), last seen
        self.delayed = 0  # retries waiting for their time, last seen
        self.dead = 0  # dead letters of the whole queue, last seen
        self.owner = False  # FIFO: this engine consumes the stream


def message(job: Job) -> bytes:
    """What a stream entry stores of a job: everything but its function (the stream's) and
    its attempts (a field of their own, the only part scripts change); its trace context
    included."""
    return orjson.dumps(
        {
            "message_id": job.message_id,
            "queue": job.queue,
            "data": job.data,
            "max_attempts": job.max_attempts,
            "backoff_delay_ms": job.backoff_delay_ms,
            "created_at": job.created_at,
            "group_id": job.group_id,
            "traceparent": job.traceparent,
            "baggage": job.baggage,
        }
    )


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def job_from_entry(stream: RedisStream, entry: Any, attempts: Any) -> RedisJob:
    """The job of a stream entry ``[id, [field, value, ...]]``; ``attempts`` the FIFO
    attempt count kept next to it (empty when none). ValueError when malformed."""
    try:
        entry_id, flat = text(entry[0]), entry[1]
        fields = {text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
        body = orjson.loads(fields["m"])
        return RedisJob(
            id=f"{body['message_id']}:{stream.function_id}",
            queue=stream.queue,
            function_id=stream.function_id,
            message_id=body["message_id"],
            data=body["data"],
            max_attempts=body["max_attempts"],
            backoff_delay_ms=body["backoff_delay_ms"],
            created_at=body["created_at"],
            attempts_made=max(int(fields["a"]), int(attempts) if attempts else 0),
            group_id=body["group_id"],
            traceparent=body.get("traceparent"),  # absent in entries of older builds
            baggage=body.get("baggage"),
            entry_id=entry_id,
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"malformed job entry: {exc!r}") from None
