"""A small Redis client on trio streams (RESP2), for the modules' redis adapters.

One TCP connection carries any number of concurrent commands: each caller writes its command
and waits for its reply, which a single reader task hands out in order (Redis answers in
order). A connection in subscribe mode is a separate object, :class:`RedisSubscription`;
:class:`ReconnectingRedis` reopens a connection that failed; :class:`Script` runs Lua.

    async with open_redis("redis://127.0.0.1:6379/0") as redis:
        await redis.execute("SET", "k", "v")
        value = await redis.execute("GET", "k")        # b"v"

Replies: simple strings as ``str``, bulk strings as ``bytes`` (``None`` when nil), integers as
``int``, arrays as ``list``; an error reply raises :class:`RedisError`. A lost connection
fails every waiting command with :class:`RedisConnectionError`.
"""

from __future__ import annotations

import collections
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import attrs
import trio

log = logging.getLogger("iii_trio.redis")

READ_SIZE = 65536
# Commands written but not yet answered, per connection: a bound so a stalled server cannot
# make callers pile up without limit (they wait for room instead).
MAX_PENDING = 1024

Arg = str | bytes | int | float


class RedisError(Exception):
    """An error reply from the server (``-ERR ...``)."""


class RedisConnectionError(RedisError):
    """The connection failed or closed; commands in flight have an unknown outcome."""


@attrs.frozen
class RedisAddress:
    host: str
    port: int
    db: int
    username: str | None
    password: str | None


def parse_url(url: str) -> RedisAddress:
    """``redis://[[user]:password@]host[:port][/db]``."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"unsupported Redis URL {url!r}: expected redis://host:port[/db]")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"unsupported Redis URL {url!r}: the path must be a database number")
    return RedisAddress(
        host=parts.hostname or "localhost",
        port=parts.port or 6379,
        db=int(path or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def encode_command(args: Sequence[Arg]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        else:
            data = repr(arg).encode() if isinstance(arg, float) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Incomplete(Exception):
    """The buffer does not hold a whole reply yet."""


class ReplyParser:
    """Incremental RESP2 parser: ``feed`` bytes, then take whole replies with ``next``."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def next(self) -> tuple[bool, Any]:
        """``(True, reply)`` or ``(False, None)`` when more bytes are needed. An error reply
        is returned as a :class:`RedisError` instance, not raised."""
        try:
            reply, end = self._parse(self._pos)
        except _Incomplete:
            return False, None
        self._pos = end
        return True, reply

    def _line(self, pos: int) -> tuple[bytes, int]:
        end = self._buffer.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete
        return bytes(self._buffer[pos:end]), end + 2

    def _parse(self, pos: int) -> tuple[Any, int]:
        if pos >= len(self._buffer):
            raise _Incomplete
        kind = self._buffer[pos : pos + 1]
        line, pos = self._line(pos + 1)
        if kind == b"+":
            return line.decode(), pos
        if kind == b"-":
            return RedisError(line.decode(errors="replace")), pos
        if kind == b":":
            return int(line), pos
        if kind == b"$":
            size = int(line)
            if size < 0:
                return None, pos
            if len(self._buffer) < pos + size + 2:
                raise _Incomplete
            return bytes(self._buffer[pos : pos + size]), pos + size + 2
        if kind == b"*":
            count = int(line)
            if count < 0:
                return None, pos
            items = []
            for _ in range(count):
                item, pos = self._parse(pos)
                items.append(item)
            return items, pos
        raise RedisConnectionError(f"unexpected reply type {kind!r} from the server")


class _Pending:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: Any = None


class Redis:
    """A pipelined connection. Made by :func:`open_redis`, which runs its reader task."""

    def __init__(self, stream: trio.SocketStream, url: str) -> None:
        self.url = url
        self._stream = stream
        self._parser = ReplyParser()
        self._waiting: collections.deque[_Pending] = collections.deque()
        self._send_lock = trio.Lock()
        self._room = trio.Semaphore(MAX_PENDING)
        self._failure: RedisConnectionError | None = None
        self.failed = trio.Event()  # set once the connection is unusable

    async def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply (an error reply raises)."""
        replies = await self.execute_many([args])
        reply = replies[0]
        if isinstance(reply, RedisError):
            raise reply
        return reply

    async def execute_many(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Send several commands in one write; their replies in order, error replies as
        :class:`RedisError` values (so one failing command does not hide the others)."""
        slots = []
        async with self._send_lock:
            for _ in commands:
                await self._room.acquire()
                slots.append(_Pending())
            self._check()
            self._waiting.extend(slots)
            try:
                await self._stream.send_all(b"".join(encode_command(c) for c in commands))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._fail(RedisConnectionError(f"{self.url}: send failed: {exc}"))
            except BaseException:
                # Cancelled mid-write: the stream may hold half a command, so it is unusable.
                self._fail(RedisConnectionError(f"{self.url}: a command was cut off"))
                raise
        try:
            for slot in slots:
                await slot.done.wait()
        finally:
            for _ in slots:
                self._room.release()
        self._check()
        return [slot.reply for slot in slots]

    @property
    def failure(self) -> RedisConnectionError | None:
        """Why the connection is unusable, once it is."""
        return self._failure

    def _check(self) -> None:
        if self._failure is not None:
            raise RedisConnectionError(str(self._failure))

    def _fail(self, error: RedisConnectionError) -> None:
        if self._failure is None:
            self._failure = error
            self.failed.set()
        while self._waiting:
            self._waiting.popleft().done.set()

    async def read_replies(self) -> None:
        try:
            while True:
                data = await self._stream.receive_some(READ_SIZE)
                if not data:
                    raise RedisConnectionError(f"{self.url}: the server closed the connection")
                self._parser.feed(data)
                while True:
                    whole, reply = self._parser.next()
                    if not whole:
                        break
                    if not self._waiting:
                        raise RedisConnectionError(f"{self.url}: a reply nobody asked for")
                    slot = self._waiting.popleft()
                    slot.reply = reply
                    slot.done.set()
        except RedisConnectionError as exc:
            self._fail(exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._fail(RedisConnectionError(f"{self.url}: {exc}"))
        finally:
            self._fail(RedisConnectionError(f"{self.url}: connection closed"))


async def _connect(url: str) -> trio.SocketStream:
    address = parse_url(url)
    try:
        stream = await trio.open_tcp_stream(address.host, address.port)
    except OSError as exc:
        raise RedisConnectionError(f"cannot connect to {url}: {exc}") from None
    setup: list[list[Arg]] = []
    if address.password is not None:
        auth: list[Arg] = ["AUTH", address.password]
        if address.username:
            auth.insert(1, address.username)
        setup.append(auth)
    if address.db:
        setup.append(["SELECT", address.db])
    if setup:
        await stream.send_all(b"".join(encode_command(c) for c in setup))
        parser = ReplyParser()
        for _ in setup:
            while True:
                whole, reply = parser.next()
                if whole:
                    break
                data = await stream.receive_some(READ_SIZE)
                if not data:
                    raise RedisConnectionError(f"{url}: closed during setup")
                parser.feed(data)
            if isinstance(reply, RedisError):
                await stream.aclose()
                raise reply
    return stream


@asynccontextmanager
async def open_redis(url: str) -> AsyncIterator[Redis]:
    stream = await _connect(url)
    redis = Redis(stream, url)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(redis.read_replies)
            try:
                yield redis
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await stream.aclose()


class Commands(Protocol):
    """What :class:`Redis` and :class:`ReconnectingRedis` both offer."""

    async def execute(self, *args: Arg) -> Any: ...

    async def execute_many(self, commands: Sequence[Sequence[Arg]]) -> list[Any]: ...


class ReconnectingRedis:
    """A :class:`Redis` connection that :meth:`run` keeps open: after a failure it is
    opened again every ``retry_seconds``. Commands sent while it is down fail at once with
    :class:`RedisConnectionError` (callers decide whether to retry)."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        retry_seconds: float = 1.0,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.name = name
        self.retry_seconds = retry_seconds
        self.on_reconnect = on_reconnect  # e.g. to restore state a restarted server lost
        self.reconnects = 0
        self._redis: Redis | None = None
        self._up = trio.Event()

    @property
    def connected(self) -> bool:
        return self._redis is not None

    def _current(self) -> Redis:
        if self._redis is None:
            raise RedisConnectionError(f"{self.url}: not connected (reconnecting)")
        return self._redis

    async def execute(self, *args: Arg) -> Any:
        return await self._current().execute(*args)

    async def execute_many(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        return await self._current().execute_many(commands)

    async def wait_connected(self) -> None:
        await self._up.wait()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled. The first connection must succeed (its error is raised before
        ``started``): a wrong URL at startup is a configuration error, not an outage."""
        started = False
        while True:
            lost: Exception | None = None
            try:
                async with open_redis(self.url) as redis:
                    self._redis = redis
                    self._up.set()
                    if started:
                        self.reconnects += 1
                        log.warning("%s: reconnected to %s", self.name, self.url)
                        if self.on_reconnect is not None:
                            self.on_reconnect()
                    else:
                        task_status.started()
                        started = True
                    await redis.failed.wait()
                    lost = redis.failure
            except (RedisConnectionError, OSError) as exc:
                if not started:
                    raise RedisConnectionError(f"{self.name}: {exc}") from None
                lost = exc
            finally:
                self._redis = None
                self._up = trio.Event()
            log.warning(
                "%s: Redis connection lost (%s); retrying in %.1f s",
                self.name,
                lost,
                self.retry_seconds,
            )
            await trio.sleep(self.retry_seconds)


@asynccontextmanager
async def open_reconnecting(url: str, *, name: str) -> AsyncIterator[ReconnectingRedis]:
    """A :class:`ReconnectingRedis` kept open for the block; the first connection must
    succeed (its error is raised here)."""
    redis = ReconnectingRedis(url, name=name)
    async with trio.open_nursery() as nursery:
        await nursery.start(redis.run)
        try:
            yield redis
        finally:
            nursery.cancel_scope.cancel()


class Script:
    """A Lua script run with EVALSHA, sent whole (EVAL) when the server does not know it
    yet (a fresh or restarted server answers NOSCRIPT)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def command(self, keys: Sequence[Arg], args: Sequence[Arg]) -> list[Arg]:
        return ["EVALSHA", self.sha, len(keys), *keys, *args]

    async def load(self, redis: Commands) -> None:
        await redis.execute("SCRIPT", "LOAD", self.source)

    async def __call__(self, redis: Commands, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        try:
            return await redis.execute(*self.command(keys, args))
        except RedisConnectionError:
            raise
        except RedisError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await redis.execute("EVAL", self.source, len(keys), *keys, *args)


class RedisSubscription:
    """A connection in pub/sub mode: ``channel, data = await subscription.receive()``."""

    def __init__(self, stream: trio.SocketStream, url: str) -> None:
        self.url = url
        self._stream = stream
        self._parser = ReplyParser()
        self._send_lock = trio.Lock()

    async def subscribe(self, *channels: str) -> None:
        async with self._send_lock:
            await self._stream.send_all(encode_command(["SUBSCRIBE", *channels]))

    async def unsubscribe(self, *channels: str) -> None:
        async with self._send_lock:
            await self._stream.send_all(encode_command(["UNSUBSCRIBE", *channels]))

    async def receive(self) -> tuple[str, bytes]:
        """The next published message as ``(channel, data)``; confirmations are skipped."""
        while True:
            whole, reply = self._parser.next()
            if not whole:
                try:
                    data = await self._stream.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, OSError) as exc:
                    raise RedisConnectionError(f"{self.url}: {exc}") from None
                if not data:
                    raise RedisConnectionError(f"{self.url}: the server closed the connection")
                self._parser.feed(data)
                continue
            if isinstance(reply, RedisError):
                raise reply
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                return reply[1].decode(), reply[2]


@asynccontextmanager
async def open_subscription(url: str) -> AsyncIterator[RedisSubscription]:
    stream = await _connect(url)
    try:
        yield RedisSubscription(stream, url)
    finally:
        await stream.aclose()
