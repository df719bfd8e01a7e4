"""The trio Redis client against a real redis-server (tests/support/redis_server.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from iii_trio.runtime.modules.storage.redis import (
    RedisConnectionError,
    RedisError,
    ReplyParser,
    Script,
    encode_command,
    open_redis,
    open_subscription,
    parse_url,
)
from tests.support.redis_server import redis_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # starts redis-server


@pytest.fixture
async def redis_url(tmp_path: Path) -> AsyncIterator[str]:
    async with redis_server(tmp_path) as url:
        yield url


def test_parser_takes_replies_split_anywhere() -> None:
    wire = b"+OK\r\n:42\r\n$5\r\nhe\r\nl\r\n$-1\r\n*2\r\n$1\r\na\r\n:7\r\n-ERR bad\r\n"
    expected = ["OK", 42, b"he\r\nl", None, [b"a", 7]]
    for split in range(len(wire) + 1):
        parser = ReplyParser()
        replies = []
        for chunk in (wire[:split], wire[split:]):
            parser.feed(chunk)
            while True:
                whole, reply = parser.next()
                if not whole:
                    break
                replies.append(reply)
        assert replies[:5] == expected, split
        assert isinstance(replies[5], RedisError)
        assert str(replies[5]) == "ERR bad"


def test_commands_are_bulk_strings() -> None:
    assert (
        encode_command(["SET", b"k", 1, 0.5])
        == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n$3\r\n0.5\r\n"
    )


def test_url_forms() -> None:
    address = parse_url("redis://u:p%40ss@r.local:6380/3")
    assert (address.host, address.port, address.db) == ("r.local", 6380, 3)
    assert (address.username, address.password) == ("u", "p@ss")
    assert parse_url("redis://localhost").port == 6379
    with pytest.raises(ValueError, match="expected redis://"):
        parse_url("http://localhost")


async def test_commands_and_replies(redis_url: str) -> None:
    async with open_redis(redis_url) as redis:
        assert await redis.execute("SET", "k", "v") == "OK"
        assert await redis.execute("GET", "k") == b"v"
        assert await redis.execute("GET", "missing") is None
        assert await redis.execute("HSET", "h", "a", "1", "b", "2") == 2
        assert sorted(await redis.execute("HKEYS", "h")) == [b"a", b"b"]


async def test_an_error_reply_raises_and_the_connection_stays_usable(redis_url: str) -> None:
    async with open_redis(redis_url) as redis:
        await redis.execute("SET", "text", "x")
        with pytest.raises(RedisError, match="not an integer"):
            await redis.execute("INCR", "text")
        replies = await redis.execute_many([["INCR", "text"], ["INCR", "n"]])
        assert isinstance(replies[0], RedisError)
        assert replies[1] == 1


async def test_concurrent_commands_on_one_connection_keep_their_replies(redis_url: str) -> None:
    async with open_redis(redis_url) as redis:

        async def worker(i: int) -> None:
            for _ in range(100):
                await redis.execute("INCR", "counter")
            # Each task reads its own key back: replies must not be crossed.
            await redis.execute("SET", f"own:{i}", str(i))
            assert await redis.execute("GET", f"own:{i}") == str(i).encode()

        async with trio.open_nursery() as nursery:
            for i in range(64):
                nursery.start_soon(worker, i)
        assert await redis.execute("GET", "counter") == b"6400"


async def test_a_dead_server_fails_waiting_commands(tmp_path: Path) -> None:
    async with redis_server(tmp_path) as url, open_redis(url) as redis:
        await redis.execute("SET", "k", "v")
        outcome: list[BaseException] = []

        async def blocked_command() -> None:
            try:
                await redis.execute("BLPOP", "never", "0")  # holds its reply until shutdown
            except RedisConnectionError as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked_command)
            await trio.sleep(0.1)  # real time: redis-server receives the blocked command
            async with open_redis(url) as other:
                with pytest.raises(RedisConnectionError):
                    await other.execute("SHUTDOWN", "NOSAVE")
        assert len(outcome) == 1
        with pytest.raises(RedisConnectionError):
            await redis.execute("GET", "k")


async def test_unreachable_server_is_a_connection_error() -> None:
    with pytest.raises(RedisConnectionError, match="cannot connect"):
        async with open_redis("redis://127.0.0.1:1"):
            pass


async def test_pubsub_delivers_published_messages(redis_url: str) -> None:
    async with open_subscription(redis_url) as subscription, open_redis(redis_url) as redis:
        await subscription.subscribe("news")
        # Publish until the subscription is active (SUBSCRIBE is acknowledged asynchronously).
        received: list[tuple[str, bytes]] = []

        async def read_one() -> None:
            received.append(await subscription.receive())

        async def published_and_received() -> bool:
            await redis.execute("PUBLISH", "news", "hello")
            return bool(received)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_one)
            await wait_until(published_and_received, what="a published message arrives")
        assert received[0] == ("news", b"hello")


async def test_a_script_runs_by_its_sha_and_is_resent_after_a_flush(redis_url: str) -> None:
    script = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    async with open_redis(redis_url) as redis:
        assert await script(redis, ["n"], [2]) == 2  # unknown to the server: sent whole
        assert await redis.execute("SCRIPT", "EXISTS", script.sha) == [1]
        assert await script(redis, ["n"], [3]) == 5
        assert await redis.execute("SCRIPT", "FLUSH") == "OK"
        assert await script(redis, ["n"], [1]) == 6
        with pytest.raises(RedisError, match="ERR"):
            await Script("return redis.call('NOPE')")(redis, [], [])
