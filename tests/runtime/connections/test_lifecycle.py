"""Connection lifecycle: reattach, auth, telemetry sockets, worker rows, shutdown (spec §3)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

from iii_trio.runtime.config.loading import EngineConfig
from iii_trio.runtime.engine import Engine
from tests.support.engine import StartEngine, worker_url
from tests.support.raw_worker import raw_worker
from tests.support.ws import open_ws, upgrade_status


async def test_reattach_retires_the_old_connection_and_its_calls(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as caller, raw_worker(worker_url(engine)) as old:
        await old.register("w::slow")
        await trio.testing.wait_all_tasks_blocked()
        await caller.invoke("w::slow", {}, "inflight")
        await old.expect("invokefunction")
        async with raw_worker(worker_url(engine)) as new:
            await new.send(
                {
                    "type": "reattach",
                    "previous_worker_id": old.worker_id,
                    "reattach_token": old.reattach_token,
                }
            )
            result = await caller.expect("invocationresult")
            assert result["error"]["code"] == "invocation_stopped"
            with trio.fail_after(5), pytest.raises(ConnectionClosed):
                await old.ws.get_message()
            rows = (await new.call("engine::workers::list", {}))["result"]["workers"]
            assert old.worker_id not in [row["id"] for row in rows]
            assert new.worker_id != old.worker_id  # reattach transfers nothing


async def test_reattach_with_a_wrong_token_does_nothing(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as old, raw_worker(worker_url(engine)) as new:
        await old.register("w::fn")
        for token in ("wrong", None):
            frame = {"type": "reattach", "previous_worker_id": old.worker_id}
            if token is not None:
                frame["reattach_token"] = token
            await new.send(frame)
        await new.send(
            {"type": "reattach", "previous_worker_id": "not-a-worker", "reattach_token": "x"}
        )
        assert (await old.call("engine::functions::list", {}))["result"]["functions"]
        assert (await new.call("engine::functions::list", {}))["result"]["functions"]


async def test_auth_token_required_when_configured(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(auth_token="s3cret")
    assert await upgrade_status(engine.port, "/") == 401
    assert await upgrade_status(engine.port, "/", {"Authorization": "Bearer wrong"}) == 401
    assert await upgrade_status(engine.port, "/otel") == 401
    assert await upgrade_status(engine.port, "/otel", {"Authorization": "Bearer s3cret"}) == 101
    async with raw_worker(
        worker_url(engine), extra_headers=[("Authorization", "Bearer s3cret")]
    ) as ok:
        rows = (await ok.call("engine::workers::list", {}))["result"]["workers"]
    assert len(engine.connections) <= 1
    assert all(row["id"] == ok.worker_id for row in rows)


async def test_unknown_paths_get_404(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    for path in ("/nope", "/ws/channels/unknown?key=x&dir=read"):
        assert await upgrade_status(engine.port, path) == 404


async def test_telemetry_frames_are_accepted_and_hidden(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as worker:
        await worker.register("w::fn")
        # N3 style: telemetry binary frames on a second "/" socket that registers nothing.
        async with raw_worker(worker_url(engine)) as telemetry:
            for prefix in (b"OTLP", b"MTRC", b"LOGS"):
                await telemetry.send_raw(prefix + b'{"resourceSpans": []}')
            # Newer SDKs: /otel, which never gets workerregistered.
            async with open_ws(worker_url(engine, "/otel")) as otel:
                await otel.send_message(b'OTLP{"resourceSpans": []}')
                await otel.send_message('{"type": "registerfunction", "id": "ignored"}')
                await trio.sleep(0.05)
                rows = (await worker.call("engine::workers::list", {}))["result"]["workers"]
                functions = (await worker.call("engine::functions::list", {}))["result"][
                    "functions"
                ]
    assert [row["id"] for row in rows] == [worker.worker_id]
    assert [f["function_id"] for f in functions] == ["w::fn"]


async def test_worker_rows_carry_metadata_and_functions(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    metadata = {
        "runtime": "node",
        "version": "0.22.1",
        "name": "host:4242",
        "os": "linux",
        "pid": 4242,
    }
    async with raw_worker(worker_url(engine)) as worker:
        await worker.register("node::echo", description="echo", metadata={"category": "x"})
        await worker.send(
            {
                "type": "invokefunction",
                "function_id": "engine::workers::register",
                "data": metadata,
                "action": {"type": "void"},
            }
        )
        await trio.sleep(0.05)
        listed = await worker.call("engine::workers::list", {"worker_id": worker.worker_id})
        functions = await worker.call("engine::functions::list", {})
        internal = await worker.call("engine::functions::list", {"include_internal": True})
    (row,) = listed["result"]["workers"]
    assert row == {
        "id": worker.worker_id,
        "name": "host:4242",
        "runtime": "node",
        "version": "0.22.1",
        "os": "linux",
        "ip_address": "127.0.0.1",
        "status": "connected",
        "connected_at_ms": row["connected_at_ms"],
        "function_count": 1,
        "functions": ["node::echo"],
        "active_invocations": 0,
        "latest_metrics": None,
        "pid": 4242,
    }
    assert isinstance(listed["result"]["timestamp"], int)
    assert functions["result"]["functions"] == [
        {
            "function_id": "node::echo",
            "description": "echo",
            "request_format": None,
            "response_format": None,
            "metadata": {"category": "x"},
        }
    ]
    internal_ids = {row["function_id"] for row in internal["result"]["functions"]}
    assert {"engine::workers::list", "engine::invocations::list", "node::echo"} <= internal_ids


async def test_unregisterfunction_removes_only_its_own_entry(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as a, raw_worker(worker_url(engine)) as b:
        await a.register("shared::fn")
        await b.register("shared::fn")
        await a.send({"type": "unregisterfunction", "id": "shared::fn"})
        await trio.testing.wait_all_tasks_blocked()
        await a.invoke("shared::fn", {}, "x")
        invoke = await b.expect("invokefunction")  # b still provides it
        await b.answer(invoke, "from b")
        assert (await a.expect("invocationresult"))["result"] == "from b"


async def test_actor_tree_shows_connections_come_and_go(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as watcher:
        async with raw_worker(worker_url(engine)):
            rows = (await watcher.call("engine::actors::list", {}))["result"]["actors"]
            connections = [row for row in rows if row["kind"] == "connection"]
            assert len(connections) == 2
            listener = next(row for row in rows if row["kind"] == "listener")
            assert all(row["parent"] == listener["id"] for row in connections)
            assert all(row["mailbox"]["capacity"] == engine.outbox_capacity for row in connections)
        await trio.sleep(0.05)
        rows = (await watcher.call("engine::actors::list", {}))["result"]["actors"]
        assert len([row for row in rows if row["kind"] == "connection"]) == 1
        tree = (await watcher.call("engine::actors::tree", {}))["result"]["roots"]
    assert [root["name"] for root in tree] == ["engine"]
    children = [child["name"] for child in tree[0]["children"]]
    assert children == ["registry", "invocations", "channels", "modules", "worker-port"]


async def test_engine_shutdown_closes_workers_with_1012(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as engine_nursery:
        engine: Engine = await engine_nursery.start(
            Engine(EngineConfig(port=0, host="127.0.0.1")).run
        )
        async with raw_worker(worker_url(engine)) as worker:
            engine_nursery.cancel_scope.cancel()
            with trio.fail_after(5), pytest.raises(ConnectionClosed):
                await worker.ws.get_message()
            assert worker.ws.closed is not None
            assert worker.ws.closed.code == 1012


async def test_handshake_deadline_closes_silent_sockets(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with await trio.open_tcp_stream("127.0.0.1", engine.port) as stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the request
        started = trio.current_time()
        with trio.fail_after(30):
            assert await stream.receive_some(1024) == b""
        assert trio.current_time() - started >= 10
