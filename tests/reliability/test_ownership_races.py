"""Ownership races (cf. iii-hq/iii#1975, #2050, #2084, #1796): worker A and its replacement
B provide the same function and the same HTTP route. In every interleaving of their
connect / cut (network drop, reconnect) / stop steps, a prober calling the function and the
route never finds either unavailable while a live connection provides it, and once both
are gone nothing of theirs is left behind.

Each worker reaches the engine through its own cutting proxy (tests/reliability/proxy.py):
a cut resets the worker's side at once and leaves the engine's side half-open for
``HALF_OPEN_SECONDS``, as a network drop does. The worker reconnects, replays its
registrations and sends ``reattach``, so the engine retires the half-open duplicate then and
there instead of routing calls into it until it times out.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.rest_api.config import RestApiConfig
from iii_trio.sdk import III, InvocationError
from tests.reliability.proxy import CuttingProxy, cutting_proxy
from tests.reliability.support import record
from tests.support.engine import StartEngine
from tests.support.waiting import wait_until

FUNCTION = "race::work"
ROUTE = "race"
HALF_OPEN_SECONDS = 3.0  # longer than the prober's deadline: a call stuck there would show
PROBE_DEADLINE = 1.5
STEP_TIMEOUT = 10.0
SETTLE_SECONDS = 0.05  # the prober gets a few calls in between steps


class Participant:
    """A trio-SDK worker behind its own proxy, driven step by step."""

    def __init__(self, name: str, proxy: CuttingProxy, nursery: trio.Nursery) -> None:
        self.name = name
        self.proxy = proxy
        self.nursery = nursery
        self.client: III | None = None
        self._stop = trio.Event()
        self._stopped = trio.Event()

    def _new_client(self) -> III:
        client = III(
            f"ws://127.0.0.1:{self.proxy.port}",
            worker_name=self.name,
            reconnect_initial=0.02,
            reconnect_max=0.1,
            shutdown_timeout=2,
        )

        async def work(data: Any) -> Any:
            return {"status_code": 200, "body": {"by": self.name}}

        client.register_function(FUNCTION, work)
        client.register_trigger("http", FUNCTION, {"api_path": ROUTE, "http_method": "GET"})
        return client

    async def _confirm(self) -> None:
        """A round trip on the worker's connection: everything it sent before is applied."""
        assert self.client is not None
        await self.client.trigger("engine::functions::list", {}, timeout=STEP_TIMEOUT)

    async def connect(self) -> None:
        self.client = self._new_client()
        self._stop, self._stopped = trio.Event(), trio.Event()
        connected = trio.Event()

        async def run(client: III) -> None:
            try:
                async with client.connect():
                    connected.set()
                    await self._stop.wait()
            finally:
                self._stopped.set()

        self.nursery.start_soon(run, self.client)
        with trio.fail_after(STEP_TIMEOUT):
            await connected.wait()
        await self._confirm()

    async def cut(self) -> None:
        """Drop the network under the worker; back once it has reconnected and replayed."""
        assert self.client is not None
        before = self.client.worker_id
        assert await self.proxy.cut(engine_side_delay=HALF_OPEN_SECONDS) == 1
        await wait_until(
            lambda: self.client is not None and self.client.worker_id != before,
            what="the worker reconnects",
            timeout=STEP_TIMEOUT,
            interval=0.005,
        )
        await self._confirm()

    async def stop(self) -> None:
        """Graceful SDK shutdown: withdraw the function, finish handlers, close."""
        self._stop.set()
        with trio.fail_after(STEP_TIMEOUT):
            await self._stopped.wait()


class Liveness:
    """Which participants are live providers, with a change counter per participant, so a
    probe can tell whether someone was live for the whole of its call."""

    def __init__(self) -> None:
        self.live: set[str] = set()
        self.changes: dict[str, int] = {}
        self.cuts = 0  # cuts started so far
        self.cutting = 0  # cuts in progress

    def up(self, name: str) -> None:
        self.live.add(name)

    def down(self, name: str) -> None:
        self.live.discard(name)
        self.changes[name] = self.changes.get(name, 0) + 1

    def snapshot(self) -> tuple[dict[str, int], int, int]:
        return {n: self.changes.get(n, 0) for n in self.live}, self.cuts, self.cutting

    def live_throughout(self, snapshot: dict[str, int]) -> set[str]:
        return {n for n, c in snapshot.items() if n in self.live and self.changes.get(n, 0) == c}


class Prober:
    def __init__(self, caller: III, http: httpx.AsyncClient, liveness: Liveness) -> None:
        self.caller = caller
        self.http = http
        self.liveness = liveness
        self.calls = 0
        self.stopped_by_cut = 0  # calls in flight to a connection being cut
        self.violations: list[str] = []
        self.answered_by: dict[str, int] = {}
        self.outcomes: dict[str, int] = {}

    async def _once(self, kind: str) -> None:
        live, cuts, cutting = self.liveness.snapshot()
        outcome: str
        by: Any = None
        with trio.move_on_after(PROBE_DEADLINE + 0.5):
            try:
                if kind == "call":
                    answer = await self.caller.trigger(FUNCTION, {}, timeout=PROBE_DEADLINE)
                    outcome, by = "ok", answer["body"]["by"]
                else:
                    response = await self.http.get(f"/{ROUTE}", timeout=PROBE_DEADLINE)
                    if response.status_code == 200:
                        outcome, by = "ok", response.json()["by"]
                    else:
                        outcome = f"HTTP {response.status_code} {response.json()['error']['code']}"
            except InvocationError as error:
                outcome = error.code
            except httpx.TimeoutException:
                outcome = "timeout"
        self.calls += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        throughout = self.liveness.live_throughout(live)
        during_cut = cutting > 0 or self.liveness.cuts != cuts or self.liveness.cutting > 0
        if outcome == "ok":
            self.answered_by[by] = self.answered_by.get(by, 0) + 1
            return
        if outcome == "timeout":
            # Never right: a call routed into a half-open connection must end when the
            # reconnected worker's reattach retires it, not at a deadline.
            self.violations.append(f"{kind}: timeout (live at start: {sorted(live)})")
            return
        if not throughout:
            return  # nobody was live for the whole call: no promise to keep
        if during_cut and outcome in ("invocation_stopped", "HTTP 500 invocation_stopped"):
            self.stopped_by_cut += 1  # routed into the half-open connection being retired
            return
        self.violations.append(f"{kind}: {outcome} while {sorted(throughout)} provided it")

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._once("call")
            await self._once("http")


def interleavings(a: list[str], b: list[str]) -> list[list[tuple[str, str]]]:
    """Every merge of A's steps and B's steps that keeps each worker's own order."""
    total = len(a) + len(b)
    result = []
    for positions in itertools.combinations(range(total), len(a)):
        steps: list[tuple[str, str]] = []
        ai = bi = 0
        for i in range(total):
            if i in positions:
                steps.append(("A", a[ai]))
                ai += 1
            else:
                steps.append(("B", b[bi]))
                bi += 1
        result.append(steps)
    return result


STEPS = ["connect", "cut", "stop"]
SEQUENCES = interleavings(STEPS, STEPS)  # 20


@asynccontextmanager
async def race_engine(start_engine: StartEngine) -> AsyncIterator[tuple[Engine, str]]:
    settings = RestApiConfig(port=0, host="127.0.0.1", default_timeout=5000)
    entry = ModuleEntry("rest_api", "modules::api::RestApiModule", "modules[0]", settings)
    engine = await start_engine(modules=(entry,))
    module: Any = engine.modules["rest_api"]
    yield engine, f"http://127.0.0.1:{module.port}"


async def nothing_left(caller: III, http: httpx.AsyncClient, engine: Engine) -> None:
    """Once both workers stopped: no provider, no route (within the half-open window)."""

    async def gone() -> bool:
        listed = FUNCTION in [row["function_id"] for row in await caller.list_functions()]
        status = (await http.get(f"/{ROUTE}")).status_code
        return not listed and status == 404 and FUNCTION not in engine.registry.functions

    what = "no provider and no route is left"
    await wait_until(gone, what=what, timeout=HALF_OPEN_SECONDS + 5, interval=0.05)


async def test_a_and_its_replacement_in_every_interleaving(start_engine: StartEngine) -> None:
    async with race_engine(start_engine) as (engine, http_url):
        assert engine.port is not None
        async with (
            III(f"ws://127.0.0.1:{engine.port}", worker_name="prober").connect() as caller,
            httpx.AsyncClient(base_url=http_url) as http,
            cutting_proxy(engine.port) as proxy_a,
            cutting_proxy(engine.port) as proxy_b,
            trio.open_nursery() as nursery,
        ):
            liveness = Liveness()
            prober = Prober(caller, http, liveness)
            await nursery.start(prober.run)
            steps_run = 0
            for sequence in SEQUENCES:
                workers = {
                    "A": Participant("A", proxy_a, nursery),
                    "B": Participant("B", proxy_b, nursery),
                }
                for who, step in sequence:
                    participant = workers[who]
                    if step == "connect":
                        await participant.connect()
                        liveness.up(who)
                    elif step == "cut":
                        liveness.down(who)
                        liveness.cuts += 1
                        liveness.cutting += 1
                        try:
                            await participant.cut()
                        finally:
                            liveness.cutting -= 1
                        liveness.up(who)
                    else:
                        liveness.down(who)
                        await participant.stop()
                    steps_run += 1
                    await trio.sleep(SETTLE_SECONDS)  # real time: measured under real load
                await nothing_left(caller, http, engine)
            nursery.cancel_scope.cancel()
        assert prober.violations == [], prober.violations[:10]
        assert prober.calls > len(SEQUENCES) * 10  # the prober really ran throughout
        record(
            "ownership_races",
            interleavings=len(SEQUENCES),
            steps=steps_run,
            probe_calls=prober.calls,
            stopped_by_cut=prober.stopped_by_cut,
            answered_by=prober.answered_by,
            outcomes=prober.outcomes,
            violations=len(prober.violations),
        )
