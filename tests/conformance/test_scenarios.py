"""Protocol scenarios with the newest official SDKs (spec §10: A7, A8, A9, A11)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from iii_trio.runtime.config import EngineConfig
from iii_trio.runtime.engine import Engine
from tests.conformance.harness import sdk_worker
from tests.conformance.test_official_sdks import prefix, wait_for_functions
from tests.conftest import worker_url

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
        await trio.sleep(1.5)  # the late result reaches the engine and is dropped quietly
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
                    while not engine.router.live:
                        await trio.sleep(0.01)
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
            await trio.sleep(0.2)
            config = EngineConfig(port=port, host="127.0.0.1")
            second: Engine = await nursery.start(Engine(config).run)
            await wait_for_functions(second, f"{prefix(label)}::echo")  # replayed, no user code
            reply = await worker.call(f"{prefix(label)}::echo", {"after": "restart"})
            assert reply["ok"], reply
            assert reply["result"]["after"] == "restart"
