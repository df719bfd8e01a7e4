"""Backpressure: a worker that stops reading its socket cannot grow the engine's memory.

A stuck worker registers a function, then never reads again (a small receive buffer, so
the kernel holds little for it). A caller keeps OUTSTANDING large calls to it in flight
for several engine deadlines. Every call ends with the engine's ``timeout`` error at its
deadline (none lost, none hanging), a second caller/target pair keeps its calls fast, and
the engine process's RSS stops growing once the stuck connection's outbox is full: the
outbox is bounded in bytes (``DEFAULT_OUTBOX_BYTES``), not only in frames.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from iii_trio.runtime.wire import frames as ws_frames
from iii_trio.sdk import III, InvocationError
from tests.reliability.support import engine_process, record, rss_bytes
from tests.support.waiting import wait_until

PAYLOAD = 256 * 1024
OUTSTANDING = 64
DEADLINE_MS = 1500
WAVES = 8  # how many deadlines the load lasts
WARM_UP_WAVES = 3  # the outbox fills and the allocator settles during these
RSS_GROWTH_BOUND = 48 * 1024 * 1024  # after warm-up; the outbox alone could reach 256 MiB
GOOD_CALL_BOUND = 1.0  # seconds, for the unaffected pair


async def stuck_worker(port: int, function_id: str) -> trio.SocketStream:
    """Connect, register ``function_id``, and return the stream, never to be read again."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host="127.0.0.1", target="/")))
    with trio.fail_after(10):
        while True:
            ws.receive_data(await stream.receive_some(65536))
            if any(isinstance(event, AcceptConnection) for event in ws.events()):
                break
    frame = b'{"type":"registerfunction","id":"' + function_id.encode() + b'"}'
    await stream.send_all(ws_frames.masked_frame(ws_frames.OP_TEXT, frame))
    return stream


async def test_a_worker_that_stops_reading_cannot_grow_the_engine(tmp_path: Path) -> None:
    config = f"default_timeout: {DEADLINE_MS}\n"
    async with engine_process(tmp_path, config) as served:
        stream = await stuck_worker(served.port, "stuck::f")
        good = III(served.url, worker_name="good")

        @good.function(id="good::echo")
        async def echo(data: Any) -> Any:
            return data

        outcomes: dict[str, int] = {}
        late: list[float] = []
        good_latencies: list[float] = []
        rss: list[int] = []
        payload = "x" * PAYLOAD
        async with (
            III(served.url, worker_name="caller").connect() as caller,
            good.connect(),
            stream,
        ):

            async def registered() -> bool:
                return "stuck::f" in [f["function_id"] for f in await caller.list_functions()]

            await wait_until(registered, what="stuck::f is registered", interval=0.05)
            stop_at = trio.current_time() + WAVES * DEADLINE_MS / 1000

            async def keep_calling() -> None:
                while trio.current_time() < stop_at:
                    started = trio.current_time()
                    try:
                        await caller.trigger("stuck::f", {"p": payload}, timeout=30)
                        code = "answered"
                    except InvocationError as error:
                        code = error.code
                    outcomes[code] = outcomes.get(code, 0) + 1
                    if trio.current_time() - started > DEADLINE_MS / 1000 + 2:
                        late.append(trio.current_time() - started)

            async def good_calls() -> None:
                n = 0
                while trio.current_time() < stop_at:
                    started = trio.current_time()
                    assert await caller.trigger("good::echo", {"n": n}, timeout=10) == {
                        "n": n,
                        "_caller_worker_id": caller.worker_id,
                    }
                    good_latencies.append(trio.current_time() - started)
                    n += 1
                    await trio.sleep(0.05)  # real time: paced calls to the engine process

            async def sample_rss() -> None:
                while trio.current_time() < stop_at:
                    rss.append(rss_bytes(served.process))
                    await trio.sleep(DEADLINE_MS / 1000)  # real time: the engine process's RSS

            async with trio.open_nursery() as nursery:
                for _ in range(OUTSTANDING):
                    nursery.start_soon(keep_calling)
                nursery.start_soon(good_calls)
                nursery.start_soon(sample_rss)
            # The engine is still whole: a fresh call works once the load is over.
            assert (await caller.trigger("good::echo", {"after": 1}))["after"] == 1
    assert set(outcomes) == {"timeout"}, outcomes  # every call ended, and at its deadline
    assert late == []
    assert max(good_latencies) < GOOD_CALL_BOUND
    growth = max(rss[WARM_UP_WAVES:]) - rss[WARM_UP_WAVES]
    record(
        "backpressure",
        calls_to_stuck_worker=sum(outcomes.values()),
        payload_kib=PAYLOAD // 1024,
        outstanding=OUTSTANDING,
        offered_mib=sum(outcomes.values()) * PAYLOAD // 2**20,
        rss_mib=[round(r / 2**20, 1) for r in rss],
        rss_growth_after_warm_up_mib=round(growth / 2**20, 1),
        good_calls=len(good_latencies),
        good_max_ms=round(max(good_latencies) * 1000, 1),
    )
    assert growth < RSS_GROWTH_BOUND, [r // 2**20 for r in rss]


async def test_the_outbox_of_a_stuck_worker_holds_at_most_its_byte_bound(
    nursery: trio.Nursery,
) -> None:
    from iii_trio.runtime.config.loading import EngineConfig
    from iii_trio.runtime.engine import Engine

    limit = 1024 * 1024
    engine: Engine = await nursery.start(
        Engine(
            EngineConfig(port=0, host="127.0.0.1", default_timeout=60_000), outbox_bytes=limit
        ).run
    )
    assert engine.port is not None
    async with (
        await stuck_worker(engine.port, "stuck::f"),
        III(f"ws://127.0.0.1:{engine.port}", worker_name="caller").connect() as caller,
    ):

        async def registered() -> bool:
            return "stuck::f" in [f["function_id"] for f in await caller.list_functions()]

        await wait_until(registered, what="stuck::f is registered")
        [stuck] = [c for c in engine.connections.values() if "stuck::f" in c.session.functions]
        peak = 0
        async with trio.open_nursery() as calls:
            for n in range(60):  # 60 x 100 KiB: six times the bound
                calls.start_soon(caller.trigger_void, "stuck::f", {"n": n, "p": "x" * 100_000})

            def all_assigned() -> bool:
                nonlocal peak
                peak = max(peak, stuck.queued_bytes)
                return len(stuck.assigned) >= 60

            await wait_until(all_assigned, what="all 60 calls are assigned")
            for _ in range(50):  # settled: the writer is blocked on the full socket
                peak = max(peak, stuck.queued_bytes)
                await trio.sleep(0.01)  # real time: the kernel's socket buffers fill
        assert 0 < peak <= limit
        # The rest wait for room, as live invocations, until their deadline.
        assert len(stuck.assigned) == 60
