"""The SDK's WebSocket client against a real engine: the upgrade, frames both ways."""

from __future__ import annotations

import orjson
import pytest

from iii_trio.sdk.transport import ClientWebSocket, HandshakeRejected
from tests.support.engine import StartEngine, worker_url


async def test_the_upgrade_is_refused_without_the_token(start_engine: StartEngine) -> None:
    engine = await start_engine(auth_token="s3cret")
    with pytest.raises(HandshakeRejected) as info:
        await ClientWebSocket.connect(worker_url(engine))
    assert info.value.status == 401


async def test_frames_travel_both_ways_after_the_upgrade(start_engine: StartEngine) -> None:
    engine = await start_engine(auth_token="s3cret")
    headers = [("Authorization", "Bearer s3cret")]
    ws = await ClientWebSocket.connect(worker_url(engine), headers)
    try:
        # The engine speaks first; its frame may arrive in the same read as the 101.
        registered = orjson.loads(await ws.receive())
        assert registered["type"] == "workerregistered"
        big = "x" * 70_000  # a 64-bit length on the way out and back
        call = {"type": "invokefunction", "invocation_id": "i1", "function_id": "nope::x"}
        await ws.send(orjson.dumps({**call, "data": {"blob": big}}).decode())
        result = orjson.loads(await ws.receive())
        assert result["invocation_id"] == "i1"
        assert result["error"]["code"] == "function_not_found"
    finally:
        await ws.aclose()
