"""Two engines on one real redis-server deliver each other's stream events to their
WebSocket clients (RedisAdapter, spec/modules.md §5.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iii_trio.sdk import III, InvocationError
from tests.runtime.modules.stream.support import stream_client, stream_entry, stream_port
from tests.support.engine import StartEngine, worker_url
from tests.support.redis_server import redis_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # starts redis-server


async def test_two_engines_share_items_and_events(
    start_engine: StartEngine, tmp_path: Path
) -> None:
    async with redis_server(tmp_path) as url:
        one = await start_engine(modules=(stream_entry("redis", redis_url=url),))
        two = await start_engine(modules=(stream_entry("redis", redis_url=url),))
        async with (
            III(worker_url(one), worker_name="on-one").connect() as iii_one,
            III(worker_url(two), worker_name="on-two").connect() as iii_two,
            stream_client(stream_port(one)) as client_one,
            stream_client(stream_port(two)) as client_two,
        ):
            at = {"stream_name": "chat", "group_id": "room", "item_id": "m1"}
            await iii_one.trigger("stream::set", {**at, "data": "before"})
            for client in (client_one, client_two):
                await client.join("s", "chat", "room")
                assert await client.events(1) == [(None, {"type": "sync", "data": ["before"]})]

            await iii_one.trigger("stream::set", {**at, "data": "from one"})
            await iii_two.trigger("stream::delete", at)
            send = {"stream_name": "chat", "group_id": "room", "type": "hello", "data": 2}
            await iii_two.trigger("stream::send", send)
            expected = [
                ("m1", {"type": "update", "data": "from one"}),
                ("m1", {"type": "delete", "data": "from one"}),
                (None, {"type": "event", "event": {"type": "hello", "data": 2}}),
            ]
            # Each client gets every change once, whichever engine made it.
            assert await client_one.events(3) == expected
            assert await client_two.events(3) == expected
            await iii_one.trigger("stream::send", {**send, "type": "end"})
            end = (None, {"type": "event", "event": {"type": "end", "data": 2}})
            assert await client_one.events(1) == [end]  # nothing came twice before it
            assert await client_two.events(1) == [end]
            assert (
                await iii_one.trigger("stream::list", {"stream_name": "chat", "group_id": "room"})
                == []
            )


async def test_a_restarted_redis_serves_stream_calls_again(
    start_engine: StartEngine, tmp_path: Path
) -> None:
    at = {"stream_name": "chat", "group_id": "room", "item_id": "m1"}
    async with redis_server(tmp_path) as url:
        engine = await start_engine(modules=(stream_entry("redis", redis_url=url),))
        async with III(worker_url(engine)).connect() as iii:
            await iii.trigger("stream::set", {**at, "data": 1})
    async with III(worker_url(engine)).connect() as iii:
        with pytest.raises(InvocationError) as info:  # the server is gone
            await iii.trigger("stream::set", {**at, "data": 2})
        assert info.value.code == "STREAM_SET_ERROR"
        async with redis_server(tmp_path, port=int(url.rsplit(":", 1)[1])):  # back, empty
            codes = []

            async def stored() -> bool:
                try:
                    await iii.trigger("stream::set", {**at, "data": 3})
                except InvocationError as exc:
                    codes.append(exc.code)
                    return False
                return True

            # The module reconnects within a second.
            await wait_until(stored, what="stream::set works again", interval=0.05)
            assert set(codes) <= {"STREAM_SET_ERROR"}
            assert await iii.trigger("stream::get", at) == 3
