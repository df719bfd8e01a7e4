"""Streaming channels through the engine (spec §7)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

from iii_trio.runtime.engine import Engine
from tests.support.engine import worker_url
from tests.support.raw_worker import raw_worker
from tests.support.waiting import wait_until
from tests.support.ws import open_ws, upgrade_status


def channel_url(engine: Engine, ref: dict[str, Any], direction: str | None = None) -> str:
    direction = direction or ref["direction"]
    return worker_url(
        engine, f"/ws/channels/{ref['channel_id']}?key={ref['access_key']}&dir={direction}"
    )


async def create(engine: Engine, **data: Any) -> dict[str, Any]:
    async with raw_worker(worker_url(engine)) as worker:
        result: dict[str, Any] = (await worker.call("engine::channels::create", data))["result"]
    return result


async def test_create_returns_matching_refs(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    refs = await create(engine)
    writer, reader = refs["writer"], refs["reader"]
    assert writer["channel_id"] == reader["channel_id"]
    assert writer["access_key"] == reader["access_key"]
    assert (writer["direction"], reader["direction"]) == ("write", "read")


async def test_frames_arrive_in_order_then_end_of_stream(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    refs = await create(engine, buffer_size=4)
    sent: list[str | bytes] = [bytes([n]) * 70000 for n in range(8)] + ["a text message", b"tail"]
    received: list[str | bytes] = []

    async def read() -> None:
        async with open_ws(channel_url(engine, refs["reader"]), max_message_size=1 << 20) as ws:
            try:
                while True:
                    received.append(await ws.get_message())
            except ConnectionClosed:
                pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        async with open_ws(channel_url(engine, refs["writer"])) as ws:
            for message in sent:
                await ws.send_message(message)
    assert received == sent


async def test_second_reader_is_closed_at_once(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    refs = await create(engine)
    async with open_ws(channel_url(engine, refs["reader"])):
        async with open_ws(channel_url(engine, refs["reader"])) as second:
            with trio.fail_after(5), pytest.raises(ConnectionClosed):
                await second.get_message()


async def test_bad_key_or_direction_gets_404(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    refs = await create(engine)
    bad_key = dict(refs["reader"], access_key="00000000-0000-4000-8000-000000000000")
    for url in (channel_url(engine, bad_key), channel_url(engine, refs["reader"], "sideways")):
        path = url.split(str(engine.port), 1)[1]
        assert await upgrade_status(engine.port, path) == 404
    good = channel_url(engine, refs["reader"]).split(str(engine.port), 1)[1]
    assert await upgrade_status(engine.port, good) == 101


async def test_buffer_size_is_capped_and_type_checked(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    await create(engine, buffer_size=100000)
    assert max(channel.buffer_size for channel in engine.channels.channels.values()) == 1024
    async with raw_worker(worker_url(engine)) as worker:
        result = await worker.call("engine::channels::create", {"buffer_size": "big"})
    assert result["error"]["code"] == "deserialization_error"


async def test_a_channel_never_connected_expires_after_five_minutes(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    refs = await create(engine)
    channel_id = refs["reader"]["channel_id"]
    await trio.sleep(250)
    assert channel_id in engine.channels.channels
    await trio.sleep(100)  # past 300 s plus one expiry period
    assert channel_id not in engine.channels.channels


async def test_a_channel_owned_by_a_connection_goes_with_it(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as owner:
        channel = engine.channels.create(owner=owner.worker_id)
    await wait_until(
        lambda: channel.id not in engine.channels.channels, what="the owner's channel is closed"
    )
