"""RestApiModule admission (D5), live requests in ``engine::invocations::list`` and the
choice between replicas, with real trio-SDK workers and a real HTTP client (§3.2, §3.6)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.rest_api.config import CorsConfig
from iii_trio.sdk import III
from tests.runtime.modules.rest_api.support import client, http_entry, routed
from tests.support.engine import StartEngine, worker_url
from tests.support.waiting import wait_until

HTTP_CALLER = {"kind": "module", "id": "http"}
Rows = list[dict[str, Any]]


class Held:
    """``api::hold``: each request (``?n=...``) stays in the handler until released, unless
    it asks ``hold=0``; records which request entered, in order, and on which worker."""

    def __init__(self, worker: III, name: str = "api") -> None:
        self.entered: list[str] = []
        self.served_by: list[tuple[str, str]] = []
        self.release: defaultdict[str, trio.Event] = defaultdict(trio.Event)
        self.all_released = False
        self.changed = trio.Event()
        self.add(worker, name)

    def add(self, worker: III, name: str) -> None:
        async def hold(request: dict[str, Any]) -> Any:
            n = request["query_params"]["n"]
            self.entered.append(n)
            self.served_by.append((n, name))
            self.changed.set()
            if request["query_params"].get("hold") != "0" and not self.all_released:
                await self.release[n].wait()
            return {"body": n}

        worker.register_function("api::hold", hold)
        worker.register_trigger("http", "api::hold", {"api_path": "hold"})

    def release_all(self) -> None:
        self.all_released = True
        for event in self.release.values():
            event.set()

    async def entering(self, count: int) -> None:
        with trio.fail_after(10):
            while len(self.entered) < count:
                self.changed = trio.Event()
                await self.changed.wait()

    async def inside(self, n: str) -> None:
        with trio.fail_after(10):
            while n not in self.entered:
                self.changed = trio.Event()
                await self.changed.wait()


async def http_rows(worker: III) -> Rows:
    listed = await worker.trigger("engine::invocations::list", {})
    return [row for row in listed["invocations"] if row["caller"] == HTTP_CALLER]


async def until_rows(worker: III, ready: Callable[[Rows], bool]) -> Rows:
    """Poll ``engine::invocations::list`` until its HTTP rows are ``ready`` (bounded)."""

    async def check() -> Rows | None:
        rows = await http_rows(worker)
        return rows if ready(rows) else None

    rows: Rows = await wait_until(check, what="the HTTP rows of engine::invocations::list")
    return rows


async def waiting(engine: Engine, count: int) -> None:
    module: Any = engine.modules["rest_api"]
    await wait_until(
        lambda: module.introspect()["waiting"] == count, what=f"{count} request(s) wait"
    )


def wall_ms() -> int:
    return int(time.time() * 1000)


async def test_admission_runs_n_queues_n_and_refuses_the_rest_with_cors(
    start_engine: StartEngine,
    autojump_clock: trio.testing.MockClock,
) -> None:
    cors = CorsConfig(allowed_origins=("https://app.example",))
    engine = await start_engine(modules=(http_entry(concurrency_request_limit=2, cors=cors),))
    worker = III(worker_url(engine), worker_name="api")
    inside = [0, 0]  # now, most at once
    release = trio.Event()

    @worker.function(id="api::hold")
    async def hold(data: Any) -> Any:
        inside[0] += 1
        inside[1] = max(inside)
        await release.wait()
        inside[0] -= 1
        return {"body": "done"}

    worker.register_trigger("http", "api::hold", {"api_path": "hold"})
    statuses: list[int] = []
    origin = {"Origin": "https://app.example"}
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)

        async def get() -> None:
            statuses.append((await http.get("/hold")).status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(4):  # 2 run, 2 wait
                nursery.start_soon(get)
            await waiting(engine, 2)
            await wait_until(lambda: inside[0] >= 2, what="two requests run the handler")
            refused = await http.get("/hold", headers=origin)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "overloaded"
            assert refused.headers["access-control-allow-origin"] == "https://app.example"
            assert refused.headers["vary"] == "Origin"
            release.set()
    assert statuses == [200, 200, 200, 200]
    assert inside[1] == 2  # never more than N at once


async def test_waiting_and_running_requests_are_listed_with_their_deadlines(
    start_engine: StartEngine,
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = await start_engine(
        modules=(http_entry(concurrency_request_limit=1, default_timeout=30000),)
    )
    worker = III(worker_url(engine), worker_name="api")
    held = Held(worker)
    answered: dict[str, int] = {}
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)

        async def get(n: str) -> None:
            answered[n] = (await http.get("/hold", params={"n": n})).status_code

        async with trio.open_nursery() as nursery:
            before = wall_ms()
            nursery.start_soon(get, "a")
            await held.inside("a")
            nursery.start_soon(get, "b")
            rows = await until_rows(worker, lambda rows: len(rows) == 2)
            after = wall_ms()
            [running] = [row for row in rows if row["state"] == "running"]
            [queued] = [row for row in rows if row["state"] == "queued"]
            for row in (running, queued):
                assert row["function_id"] == "api::hold"
                assert row["caller"] == HTTP_CALLER  # the shape every module caller has
                assert before <= row["started_at"] <= after  # when its head arrived
                assert row["deadline_ms"] == row["started_at"] + 30000  # the wait included
            assert running["target_worker"] == worker.worker_id
            assert queued["target_worker"] is None  # no provider chosen while it waits
            assert queued["started_at"] >= running["started_at"]

            held.release["a"].set()  # b is admitted: the same row, now running
            await held.inside("b")
            [admitted] = await until_rows(
                worker, lambda rows: len(rows) == 1 and rows[0]["state"] == "running"
            )
            assert admitted["id"] == queued["id"]
            assert admitted["started_at"] == queued["started_at"]
            assert admitted["deadline_ms"] == queued["deadline_ms"]
            assert admitted["target_worker"] == worker.worker_id
            held.release["b"].set()
        assert answered == {"a": 200, "b": 200}
        assert await http_rows(worker) == []  # answered: gone from the list
        gone = await worker.trigger("engine::invocations::list", {})
        assert all(row["id"] != queued["id"] for row in gone["invocations"])


async def test_waiters_are_admitted_in_arrival_order(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(http_entry(concurrency_request_limit=3),))
    worker = III(worker_url(engine), worker_name="api")
    held = Held(worker)
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)
        async with trio.open_nursery() as nursery:
            for n in "012":  # the 3 slots, each held
                nursery.start_soon(http.get, f"/hold?n={n}")
                await held.inside(n)
            for count, n in enumerate("345", start=1):  # each waiting before the next comes
                nursery.start_soon(http.get, f"/hold?n={n}")
                await waiting(engine, count)
            for freed, expected in zip("012", "345", strict=True):
                held.release[freed].set()  # one slot free: the oldest waiter takes it
                await held.entering(len(held.entered) + 1)
                assert held.entered[-1] == expected
            held.release_all()
    assert held.entered == list("012345")


async def test_the_wait_counts_against_default_timeout(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(
        modules=(http_entry(concurrency_request_limit=1, default_timeout=3000),)
    )
    worker = III(worker_url(engine), worker_name="api")
    held = Held(worker)  # nothing is released: both requests run into their deadline
    ended: dict[str, float] = {}
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)

        async def get(n: str) -> None:
            response = await http.get("/hold", params={"n": n})
            assert response.status_code == 504
            assert response.json()["error"]["code"] == "timeout"
            ended[n] = trio.current_time()

        async with trio.open_nursery() as nursery:
            a_arrived = trio.current_time()
            nursery.start_soon(get, "a")
            await held.inside("a")
            await trio.sleep(1)
            b_arrived = trio.current_time()
            nursery.start_soon(get, "b")  # waits 2 s for a's slot, then runs 1 s
        held.release_all()
    assert ended["a"] == pytest.approx(a_arrived + 3, abs=0.05)
    # At its arrival + default_timeout, not 3 s after its admission (a_arrived + 6).
    assert ended["b"] == pytest.approx(b_arrived + 3, abs=0.05)
    assert held.entered == ["a", "b"]  # b ran once a's slot was free


async def test_the_least_loaded_replica_gets_the_next_request(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(http_entry(),))
    replicas = [III(worker_url(engine), worker_name=name) for name in ("r1", "r2")]
    held = Held(replicas[0], "r1")
    held.add(replicas[1], "r2")
    async with replicas[0].connect(), replicas[1].connect(), client(engine) as http:
        await routed(engine, 2)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(http.get, "/hold?n=held")
            await held.inside("held")
            [(_, busy)] = held.served_by
            for n in range(4):  # round-robin would send every other one to the busy replica
                quick = await http.get("/hold", params={"n": str(n), "hold": "0"})
                assert quick.json() == str(n)
            held.release_all()
    idle = {"r1": "r2", "r2": "r1"}[busy]
    assert held.served_by[1:] == [(str(n), idle) for n in range(4)]
