"""Protocol scenarios with the newest official SDKs (spec §10: A7, A8, A9, A11)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from iii_trio.runtime.config.loading import EngineConfig, ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.queue.config import NamedQueueConfig, QueueConfig
from tests.conformance.harness import sdk_worker
from tests.conformance.test_official_sdks import prefix, wait_for_functions
from tests.support.engine import StartEngine, worker_url
from tests.support.waiting import wait_until

NEWEST = [("P25", "N22"), ("N22", "P25")]


@pytest.mark.parametrize(("caller_label", "target_label"), NEWEST)
async def test_client_timeout_then_the_next_call_succeeds(
    engine: Engine, tmp_path: Path, caller_label: str, target_label: str
) -> None:
    url = worker_url(engine)
    async with (
        sdk_worker(caller_label, url, prefix(caller_label), tmp_path) as caller,
        sdk_worker(target_label, url, prefix(target_label), tmp_path),
    ):
        target = prefix(target_label)
        await wait_for_functions(engine, f"{target}::sleepy")
        late = await caller.call(f"{target}::sleepy", {"sleep_ms": 1500}, timeout_ms=300)
        assert not late["ok"]
        assert late["error"]["code"] == "TIMEOUT"  # the SDK's own timeout
        again = await caller.call(f"{target}::echo", {"after": "timeout"})
        assert again["ok"]
        assert again["result"]["after"] == "timeout"
        await trio.sleep(1.5)  # real time (SDK processes): the late result is dropped quietly
        assert (await caller.call(f"{target}::echo", 1))["result"] == 1


@pytest.mark.parametrize(("caller_label", "target_label"), NEWEST)
async def test_target_killed_mid_call_stops_the_call_at_once(
    engine: Engine, tmp_path: Path, caller_label: str, target_label: str
) -> None:
    url = worker_url(engine)
    async with sdk_worker(caller_label, url, prefix(caller_label), tmp_path) as caller:
        async with sdk_worker(target_label, url, prefix(target_label), tmp_path) as target:
            name = prefix(target_label)
            await wait_for_functions(engine, f"{name}::sleepy")
            replies = []

            async def slow_call() -> None:
                replies.append(
                    await caller.call(f"{name}::sleepy", {"sleep_ms": 20000}, timeout_ms=30000)
                )

            with trio.fail_after(10):  # long before the 20 s handler or the 30 s timeout
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(slow_call)
                    await wait_until(lambda: engine.router.live, what="the call is in flight")
                    target.process.kill()
        reply = replies[0]
        assert not reply["ok"]
        assert reply["error"]["code"] == "invocation_stopped"
        assert f"{name}::sleepy" not in engine.registry.functions


@pytest.mark.parametrize("label", ["P4", "P11", "P25", "N3", "N11", "N22"])
async def test_engine_restart_sdks_reconnect_and_replay(
    label: str, tmp_path: Path, nursery: trio.Nursery
) -> None:
    first = Engine(EngineConfig(port=0, host="127.0.0.1"))
    async with trio.open_nursery() as first_nursery:
        await first_nursery.start(first.run)
        port = first.port
        url = f"ws://127.0.0.1:{port}/"
        async with sdk_worker(label, url, prefix(label), tmp_path) as worker:
            await wait_for_functions(first, f"{prefix(label)}::echo")
            first_nursery.cancel_scope.cancel()  # every connection closes with 1012
            await trio.sleep(0.2)  # real time: the SDK process sees the close before the restart
            config = EngineConfig(port=port, host="127.0.0.1")
            second: Engine = await nursery.start(Engine(config).run)
            await wait_for_functions(second, f"{prefix(label)}::echo")  # replayed, no user code
            reply = await worker.call(f"{prefix(label)}::echo", {"after": "restart"})
            assert reply["ok"], reply
            assert reply["result"]["after"] == "restart"


@pytest.mark.parametrize(("caller_label", "target_label"), [("N22", "P25"), ("P11", "N11")])
async def test_concurrent_calls_are_correlated(
    engine: Engine, tmp_path: Path, caller_label: str, target_label: str
) -> None:
    url = worker_url(engine)
    async with (
        sdk_worker(caller_label, url, prefix(caller_label), tmp_path) as caller,
        sdk_worker(target_label, url, prefix(target_label), tmp_path),
    ):
        target = prefix(target_label)
        await wait_for_functions(engine, f"{target}::sleepy")
        # A fixed spread of 0-198 ms sleeps, so completions come back out of order.
        datas = [{"n": n, "sleep_ms": (n * 37) % 199} for n in range(100)]
        reply = await caller.request("call_many", function_id=f"{target}::sleepy", datas=datas)
    assert reply["ok"], reply
    assert [result["n"] for result in reply["result"]] == list(range(100))
    assert all(
        result["sleep_ms"] == data["sleep_ms"]
        for result, data in zip(reply["result"], datas, strict=True)
    )


@pytest.mark.parametrize("provider_label", ["N22", "N3"])
async def test_worker_provided_trigger_type(
    engine: Engine, tmp_path: Path, provider_label: str
) -> None:
    url = worker_url(engine)
    async with (
        sdk_worker("P25", url, "owner", tmp_path) as owner,
        sdk_worker(provider_label, url, "provider", tmp_path) as provider,
    ):
        await wait_for_functions(engine, "owner::echo")
        assert (await provider.request("register_trigger_type", id="ntype"))["ok"]
        registered = await owner.request(
            "register_trigger",
            trigger_type="ntype",
            function_id="owner::echo",
            config={"topic": "t1"},
        )
        event = await provider.next_event("trigger_registered")
        assert event["config"]["function_id"] == "owner::echo"
        assert event["config"]["config"] == {"topic": "t1"}
        assert event["config"]["id"]
        # The provider fires the binding itself, with an ordinary call.
        fired = await provider.call(event["config"]["function_id"], {"fired": "t1"})
        assert fired["ok"]
        assert fired["result"]["fired"] == "t1"
        assert (await owner.request("unregister_trigger", handle=registered["result"]["handle"]))[
            "ok"
        ]
        if provider_label == "N22":  # N3 ignores unregistertrigger (spec §9.2)
            gone = await provider.next_event("trigger_unregistered")
            assert gone["config"]["id"] == event["config"]["id"]


async def test_a_late_provider_receives_the_parked_binding(engine: Engine, tmp_path: Path) -> None:
    url = worker_url(engine)
    async with sdk_worker("P25", url, "owner", tmp_path) as owner:
        await owner.request(
            "register_trigger",
            trigger_type="ntype",
            function_id="owner::echo",
            config={"topic": "t2"},
        )
        async with sdk_worker("N22", url, "provider", tmp_path) as provider:
            await provider.request("register_trigger_type", id="ntype")
            event = await provider.next_event("trigger_registered")
    assert event["config"]["config"] == {"topic": "t2"}


@pytest.mark.parametrize("label", ["N22", "P11"])
async def test_enqueue_to_an_unconfigured_queue_is_an_enqueue_error(
    engine: Engine, tmp_path: Path, label: str
) -> None:
    # A16's error path without a QueueModule.
    async with sdk_worker(label, worker_url(engine), prefix(label), tmp_path) as worker:
        await wait_for_functions(engine, f"{prefix(label)}::echo")
        reply = await worker.request(
            "enqueue", function_id=f"{prefix(label)}::echo", data={}, queue="default"
        )
    assert not reply["ok"]
    assert reply["error"]["code"] == "enqueue_error"


@pytest.mark.parametrize("label", ["N22", "P11"])
async def test_enqueue_to_a_configured_queue_runs_the_target_afterwards(
    start_engine: StartEngine, tmp_path: Path, label: str
) -> None:
    # A16's happy path: queue `default` configured in the QueueModule.
    queues = QueueConfig(queue_configs={"default": NamedQueueConfig()})
    engine = await start_engine(
        modules=(ModuleEntry("queue", "modules::queue::QueueModule", "modules[0]", queues),)
    )
    name = prefix(label)
    async with sdk_worker(label, worker_url(engine), name, tmp_path) as worker:
        await wait_for_functions(engine, f"{name}::count", f"{name}::read_count")
        reply = await worker.request(
            "enqueue", function_id=f"{name}::count", data={"n": 1}, queue="default"
        )
        assert reply["ok"], reply
        assert set(reply["result"]) == {"messageReceiptId"}

        async def counted() -> bool:
            return bool((await worker.call(f"{name}::read_count", {}))["result"]["count"] == 1)

        # The target runs afterwards, through the queue.
        await wait_until(counted, what="the queued call runs the target", interval=0.05)
        unconfigured = await worker.request(
            "enqueue", function_id=f"{name}::count", data={}, queue="nope"
        )
    assert unconfigured["error"]["code"] == "enqueue_error"


@pytest.mark.parametrize("label", ["N3", "P4"])
async def test_functions_available_callback_sees_a_late_function(
    engine: Engine, tmp_path: Path, label: str
) -> None:
    url = worker_url(engine)
    async with sdk_worker(label, url, prefix(label), tmp_path) as watcher:
        await wait_for_functions(engine, f"{prefix(label)}::echo")
        assert (await watcher.request("on_functions_available"))["ok"]
        await trio.sleep(1)  # real time (SDK process): its binding is in place before the late one
        async with sdk_worker("N22", url, "late", tmp_path):
            with trio.fail_after(10):  # spec: within about 5 s
                while True:
                    event = await watcher.next_event("functions_available")
                    if "late::echo" in event["functions"]:
                        break


@pytest.mark.slow
async def test_keepalive_across_70_seconds_idle(engine: Engine, tmp_path: Path) -> None:
    # Real time on purpose: N22 reconnects after 60 s without inbound frames unless the
    # engine answers its pings; the Python SDKs close after a missed pong (A12).
    url = worker_url(engine)
    async with (
        sdk_worker("N22", url, "n22", tmp_path) as n22,
        sdk_worker("P25", url, "p25", tmp_path) as p25,
        sdk_worker("P4", url, "p4", tmp_path) as p4,
    ):
        await wait_for_functions(engine, "n22::echo", "p25::echo", "p4::echo")
        connections = set(engine.connections)
        await trio.sleep(70)  # real time: the SDK processes' keepalive timers
        assert set(engine.connections) == connections  # nobody reconnected
        for worker, target in ((n22, "p25"), (p25, "p4"), (p4, "n22")):
            reply = await worker.call(f"{target}::echo", {"still": "here"})
            assert reply["ok"], reply


async def test_channel_between_p25_and_n22(engine: Engine, tmp_path: Path) -> None:
    url = worker_url(engine)
    async with (
        sdk_worker("P25", url, "p25", tmp_path) as p25,
        sdk_worker("N22", url, "n22", tmp_path),
    ):
        await wait_for_functions(engine, "n22::fill")
        reply = await p25.request("channel_fill", function_id="n22::fill", bytes=1 << 20)
    assert reply["ok"], reply
    assert reply["result"] == {"bytes": 1 << 20, "values": [7], "messages": ["done"]}


@pytest.mark.parametrize("label", ["P4", "N3", "P25", "N22"])
async def test_a_worker_calls_its_own_function(engine: Engine, tmp_path: Path, label: str) -> None:
    # A2: both legs of the call use the caller's invocation id (checked in tests/runtime).
    async with sdk_worker(label, worker_url(engine), prefix(label), tmp_path) as worker:
        await wait_for_functions(engine, f"{prefix(label)}::echo")
        reply = await worker.call(f"{prefix(label)}::echo", {"me": label})
    assert reply["ok"], reply
    assert reply["result"]["me"] == label
    assert reply["result"]["_caller_worker_id"]


async def test_p4_client_timeout_raises_timeouterror(engine: Engine, tmp_path: Path) -> None:
    # A8 for P4: its timeout is in seconds and raises the builtin TimeoutError.
    async with sdk_worker("P4", worker_url(engine), "p4", tmp_path) as p4:
        await wait_for_functions(engine, "p4::sleepy")
        late = await p4.call("p4::sleepy", {"sleep_ms": 3000}, timeout_ms=1000)
        assert not late["ok"]
        assert late["error"]["type"] == "TimeoutError"
        assert (await p4.call("p4::echo", 5))["result"] == 5
