"""Routing of calls through a real engine with raw WebSocket workers (spec §4)."""

from __future__ import annotations

import uuid

import trio
import trio.testing

from iii_trio.runtime.engine import Engine
from tests.support.engine import StartEngine, worker_url
from tests.support.raw_worker import raw_worker
from tests.support.waiting import wait_until


async def test_handshake_sends_workerregistered_first(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as worker:
        hello = worker.hello
    assert set(hello) == {"type", "worker_id", "reattach_token"}  # never `features`
    assert str(uuid.UUID(hello["worker_id"])) == hello["worker_id"]
    assert len(hello["reattach_token"]) >= 22  # >= 128 bits, url-safe base64


async def test_each_connection_gets_its_own_id_and_token(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as a, raw_worker(worker_url(engine)) as b:
        assert a.worker_id != b.worker_id
        assert a.reattach_token != b.reattach_token


async def test_sync_call_reuses_the_callers_id_and_injects_the_caller(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as target, raw_worker(worker_url(engine)) as caller:
        await target.register("t::echo")
        await trio.testing.wait_all_tasks_blocked()
        call_id = str(uuid.uuid4())
        await caller.invoke("t::echo", {"a": 1, "_caller_worker_id": "forged"}, call_id)
        invoke = await target.expect("invokefunction")
        assert invoke["invocation_id"] == call_id
        assert invoke["data"] == {"a": 1, "_caller_worker_id": caller.worker_id}
        await target.answer(invoke, {"echo": invoke["data"]})
        result = await caller.expect("invocationresult")
    assert result == {
        "type": "invocationresult",
        "invocation_id": call_id,
        "function_id": "t::echo",
        "result": {"echo": {"a": 1, "_caller_worker_id": caller.worker_id}},
    }


async def test_non_object_data_is_forwarded_unchanged(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as target, raw_worker(worker_url(engine)) as caller:
        await target.register("t::echo")
        await trio.testing.wait_all_tasks_blocked()
        for data in ([1, 2], "text", 5, None):
            await caller.invoke("t::echo", data, str(uuid.uuid4()))
            invoke = await target.expect("invokefunction")
            assert invoke["data"] == data
            await target.answer(invoke, invoke["data"])
            await caller.expect("invocationresult")


async def test_a_worker_can_call_its_own_function(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as worker:
        await worker.register("me::echo")
        call_id = str(uuid.uuid4())
        await worker.invoke("me::echo", {"x": 1}, call_id)
        invoke = await worker.expect("invokefunction")
        assert invoke["invocation_id"] == call_id
        await worker.answer(invoke, invoke["data"])
        result = await worker.expect("invocationresult")
    assert result["result"] == {"x": 1, "_caller_worker_id": worker.worker_id}


async def test_errors_from_the_target_reach_the_caller(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    error = {"code": "invocation_failed", "message": "kaboom", "stacktrace": "at f"}
    async with raw_worker(worker_url(engine)) as target, raw_worker(worker_url(engine)) as caller:
        await target.register("t::boom")
        await trio.testing.wait_all_tasks_blocked()
        await caller.invoke("t::boom", {}, "c1")
        invoke = await target.expect("invokefunction")
        await target.answer(invoke, error=error)
        result = await caller.expect("invocationresult")
    assert result["error"] == error
    assert "result" not in result


async def test_unknown_function_fails_at_once(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as caller:
        result = await caller.call("nope::x", {})
    assert result["error"] == {
        "code": "function_not_found",
        "message": "Function nope::x not found",
    }


async def test_void_calls_run_the_target_and_never_answer_the_caller(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as target, raw_worker(worker_url(engine)) as caller:
        await target.register("t::count")
        await trio.testing.wait_all_tasks_blocked()
        # Seed-era void (no id), >=0.9 void (action), Rust void (null id), id + void action.
        await caller.send({"type": "invokefunction", "function_id": "t::count", "data": {"n": 1}})
        await caller.send(
            {
                "type": "invokefunction",
                "function_id": "t::count",
                "data": {"n": 2},
                "action": {"type": "void"},
            }
        )
        await caller.send(
            {
                "type": "invokefunction",
                "function_id": "t::count",
                "data": {"n": 3},
                "invocation_id": None,
            }
        )
        await caller.send(
            {
                "type": "invokefunction",
                "function_id": "t::count",
                "data": {"n": 4},
                "invocation_id": "with-id",
                "action": {"type": "void"},
            }
        )
        seen = []
        for _ in range(4):
            invoke = await target.expect("invokefunction")
            assert invoke["invocation_id"]
            assert invoke["invocation_id"] != "with-id"
            seen.append(invoke["data"]["n"])
            await target.answer(invoke, {"ok": True})
        assert sorted(seen) == [1, 2, 3, 4]
        # The next frame the caller sees is the answer to a later sync call, not a void result.
        await caller.invoke("t::count", {"n": 5}, "sync")
        invoke = await target.expect("invokefunction")
        await target.answer(invoke, {"ok": 5})
        result = await caller.expect("invocationresult")
        assert result["invocation_id"] == "sync"


async def test_results_are_correlated_by_id_in_any_order(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as target, raw_worker(worker_url(engine)) as caller:
        await target.register("t::echo")
        await trio.testing.wait_all_tasks_blocked()
        for n in range(20):
            await caller.invoke("t::echo", {"n": n}, f"id-{n}")
        invokes = [await target.expect("invokefunction") for _ in range(20)]
        for invoke in reversed(invokes):
            await target.answer(invoke, invoke["data"]["n"])
        results = [await caller.expect("invocationresult") for _ in range(20)]
    assert [r["invocation_id"] for r in results] == [f"id-{n}" for n in reversed(range(20))]
    assert all(r["result"] == int(r["invocation_id"][3:]) for r in results)


async def test_late_and_unknown_results_are_ignored(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as target, raw_worker(worker_url(engine)) as caller:
        await target.register("t::echo")
        await target.send(
            {"type": "invocationresult", "invocation_id": "never-sent", "function_id": "x"}
        )
        await target.send({"type": "invocationresult", "function_id": "x", "result": 1})
        await trio.testing.wait_all_tasks_blocked()
        await caller.invoke("t::echo", {"a": 1}, "ok")
        invoke = await target.expect("invokefunction")
        await target.answer(invoke, "fine")
        assert (await caller.expect("invocationresult"))["result"] == "fine"


async def test_replicas_share_calls_and_survive_one_leaving(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as caller, raw_worker(worker_url(engine)) as b:
        await b.register("r::echo")
        received: dict[str, list[dict[str, object]]] = {"a": [], "b": []}
        async with raw_worker(worker_url(engine)) as a:
            await a.register("r::echo")
            await trio.testing.wait_all_tasks_blocked()
            # 10 calls in flight at once: least-loaded routing puts 5 on each replica.
            for n in range(10):
                await caller.invoke("r::echo", {"n": n}, f"c{n}")
            for name, worker in (("a", a), ("b", b)):
                for _ in range(5):
                    received[name].append(await worker.expect("invokefunction"))
            with trio.move_on_after(0.1):
                extra = await a.recv()
                raise AssertionError(f"unbalanced: a got a sixth call {extra}")
        # a left with its 5 calls in flight: exactly those fail with invocation_stopped.
        stopped = {(await caller.expect("invocationresult"))["invocation_id"] for _ in range(5)}
        assert stopped == {invoke["invocation_id"] for invoke in received["a"]}
        rows = await caller.call("engine::functions::list", {})
        assert "r::echo" in [r["function_id"] for r in rows["result"]["functions"]]
        # b's calls were untouched, and new calls go to b.
        await caller.invoke("r::echo", {"n": 99}, "after")
        received["b"].append(await b.expect("invokefunction"))
        for invoke in received["b"]:
            await b.answer(invoke, invoke["data"]["n"])
        answered = [await caller.expect("invocationresult") for _ in range(6)]
    assert all("error" not in frame for frame in answered)
    assert {frame["invocation_id"] for frame in answered} == {
        invoke["invocation_id"] for invoke in received["b"]
    }


async def test_target_disconnect_fails_in_flight_calls_at_once(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as caller:
        async with raw_worker(worker_url(engine)) as target:
            await target.register("t::slow")
            await trio.testing.wait_all_tasks_blocked()
            await caller.invoke("t::slow", {}, "doomed")
            await target.expect("invokefunction")
        with trio.fail_after(2):  # long before any deadline
            result = await caller.expect("invocationresult")
    assert result["invocation_id"] == "doomed"
    assert result["error"] == {"code": "invocation_stopped", "message": "Invocation stopped"}


async def test_caller_disconnect_drops_its_pending_calls(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as target:
        await target.register("t::slow")
        async with raw_worker(worker_url(engine)) as caller:
            await trio.testing.wait_all_tasks_blocked()
            await caller.invoke("t::slow", {}, "orphan")
            invoke = await target.expect("invokefunction")
        await wait_until(lambda: not engine.router.live, what="the orphaned call is dropped")
        await target.answer(invoke, "too late")  # delivered to nobody, no error
        assert (await target.call("engine::functions::list", {}))["result"]["functions"]


async def test_engine_deadline_expires_with_timeout(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(default_timeout=1000)
    async with raw_worker(worker_url(engine)) as target, raw_worker(worker_url(engine)) as caller:
        await target.register("t::sleepy")
        await trio.testing.wait_all_tasks_blocked()
        started = trio.current_time()
        await caller.invoke("t::sleepy", {}, "late")
        invoke = await target.expect("invokefunction")
        result = await caller.expect("invocationresult", timeout=30)
        assert trio.current_time() - started >= 1.0
        assert result["error"] == {
            "code": "timeout",
            "message": "invocation of t::sleepy timed out after 1000 ms",
        }
        assert engine.router.live == {}
        await target.answer(invoke, "late result")  # dropped without error
        listed = await caller.call("engine::invocations::list", {})
        assert listed["result"]["invocations"] == []


async def test_invocations_list_shows_a_live_call(engine: Engine) -> None:
    async with raw_worker(worker_url(engine)) as target, raw_worker(worker_url(engine)) as caller:
        await target.register("t::slow")
        await trio.testing.wait_all_tasks_blocked()
        await caller.invoke("t::slow", {}, "live-1")
        invoke = await target.expect("invokefunction")
        await trio.sleep(0.05)  # real clock: the row's age_ms is wall time
        listed = await caller.call("engine::invocations::list", {})
        rows = listed["result"]["invocations"]
        assert len(rows) == 1
        row = rows[0]
        assert row["id"] == "live-1"
        assert row["function_id"] == "t::slow"
        assert row["caller"] == {"kind": "worker", "id": caller.worker_id}
        assert row["target_worker"] == target.worker_id
        assert row["state"] == "running"
        assert row["age_ms"] >= 50
        assert row["deadline_ms"] == row["started_at"] + 300000
        got = await caller.call("engine::invocations::get", {"id": "live-1"})
        assert got["result"]["id"] == "live-1"
        await target.answer(invoke, 1)
        assert (await caller.expect("invocationresult"))["invocation_id"] == "live-1"
        gone = await caller.call("engine::invocations::get", {"id": "live-1"})
        assert gone["error"]["code"] == "invocation_not_found"


async def test_in_flight_bound_per_worker_queues_the_excess(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(max_in_flight_per_worker=2)
    async with raw_worker(worker_url(engine)) as target, raw_worker(worker_url(engine)) as caller:
        await target.register("t::slow")
        await trio.testing.wait_all_tasks_blocked()
        for n in range(10):
            await caller.invoke("t::slow", {"n": n}, f"q{n}")
        first = [await target.expect("invokefunction") for _ in range(2)]
        with trio.move_on_after(0.2):
            extra = await target.recv()
            raise AssertionError(f"a third call reached the worker: {extra}")
        states = sorted(row["state"] for row in engine.router.rows(0))
        assert states == ["queued"] * 8 + ["running"] * 2
        pending = first
        done = 0
        while pending:
            invoke = pending.pop(0)
            await target.answer(invoke, invoke["data"]["n"])
            done += 1
            if done <= 8:
                pending.append(await target.expect("invokefunction"))
        results = sorted([(await caller.expect("invocationresult"))["result"] for _ in range(10)])
    assert results == list(range(10))
