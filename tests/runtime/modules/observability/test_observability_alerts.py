"""Alert rules (spec/modules.md §9.4) on a real engine under trio's autojump clock: engine
functions that fail on demand, a real HTTP server on port 0 as the webhook target."""

from __future__ import annotations

import itertools
from typing import Any

import h11
import orjson
import pytest
import trio
import trio.testing

from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.calls.invocation import CallContext, EngineFunction
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.observability.config import AlertAction, AlertRule
from tests.runtime.modules.observability.support import call, otel_entry, otel_stats
from tests.support.engine import StartEngine

BASE_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z


async def alert_engine(start_engine: StartEngine, *rules: AlertRule) -> Engine:
    engine = await start_engine(modules=(otel_entry(alerts=rules),))
    observer: Any = engine.modules["observability"].observer  # type: ignore[attr-defined]
    observer.clock = lambda: BASE_NS + int(trio.current_time() * 1e9)
    return engine


def failing(engine: Engine) -> None:
    async def fail(data: Any, ctx: CallContext) -> None:
        raise InvocationError("boom", "failed on purpose")

    engine.registry.add_engine_function(EngineFunction("test::fail", fail))


async def fail_times(engine: Engine, count: int) -> None:
    for _ in range(count):
        with pytest.raises(InvocationError):
            await call(engine, "test::fail")


def state(listed: dict[str, Any], name: str) -> dict[str, Any]:
    [row] = [row for row in listed["alerts"] if row["name"] == name]
    return row


async def test_errors_in_the_window_fire_once_per_cooldown(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    rule = AlertRule(
        name="errors",
        metric="iii.invocations.error",
        threshold=3,
        operator=">=",
        window_seconds=60,
        cooldown_seconds=30,
    )
    engine = await alert_engine(start_engine, rule)
    failing(engine)
    await fail_times(engine, 3)
    evaluated = await call(engine, "engine::alerts::evaluate")
    [event] = evaluated["triggered"]
    assert event == {
        "alert": "errors",
        "metric": "iii.invocations.error",
        "value": 3.0,
        "threshold": 3.0,
        "operator": ">=",
        "timestamp": event["timestamp"],
    }
    assert evaluated["firing_count"] == 1
    logged = await call(engine, "engine::logs::list", {"severity_text": "warn"})
    [record] = logged["logs"]
    assert record["body"] == "alert errors firing: iii.invocations.error = 3.0 (>= 3.0)"
    assert record["attributes"]["alert"] == "errors"
    # Within the cooldown: still firing, no second action.
    assert (await call(engine, "engine::alerts::evaluate"))["triggered"] == []
    await trio.sleep(31)  # past the cooldown; the 10 s loop has evaluated meanwhile
    listed = await call(engine, "engine::alerts::list")
    row = state(listed, "errors")
    assert (row["firing"], row["value"], row["trigger_count"]) == (True, 3.0, 2)
    assert otel_stats(engine)["alerts"]["evaluations"] >= 5
    await trio.sleep(30)  # the errors leave the 60 s window
    row = state(await call(engine, "engine::alerts::list"), "errors")
    assert (row["firing"], row["value"], row["trigger_count"]) == (False, 0.0, 2)
    assert (await call(engine, "engine::alerts::list"))["firing_count"] == 0


@pytest.mark.parametrize(
    ("operator", "threshold", "firing"),
    [
        (">", 0, False),
        (">=", 0, True),
        ("<", 1, True),
        ("<=", -1, False),
        ("==", 0, True),
        ("!=", 0, False),
    ],
)
async def test_each_operator(
    start_engine: StartEngine,
    operator: Any,
    threshold: float,
    firing: bool,
    autojump_clock: trio.testing.MockClock,
) -> None:
    rule = AlertRule(name="r", metric="iii.workers.active", threshold=threshold, operator=operator)
    engine = await alert_engine(start_engine, rule)
    listed = await call(engine, "engine::alerts::evaluate")
    assert (state(listed, "r")["value"], state(listed, "r")["firing"]) == (0.0, firing)


async def test_disabled_rules_are_listed_but_not_evaluated(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    rules = (
        AlertRule(name="on", metric="iii.workers.active", threshold=0, operator=">="),
        AlertRule(
            name="off", metric="iii.workers.active", threshold=0, operator=">=", enabled=False
        ),
    )
    engine = await alert_engine(start_engine, *rules)
    listed = await call(engine, "engine::alerts::evaluate")
    assert [e["alert"] for e in listed["triggered"]] == ["on"]
    off = state(listed, "off")
    assert (off["enabled"], off["firing"], off["last_evaluated"]) == (False, False, None)


async def webhook_server(
    received: list[tuple[float, Any]], failures: int, task_status: trio.TaskStatus[int]
) -> None:
    """A real HTTP server on port 0: answers 503 to the first ``failures`` POSTs, then 200;
    keeps (trio time, JSON body) of each."""

    async def serve(stream: trio.SocketStream) -> None:
        http = h11.Connection(h11.SERVER)
        body = b""
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                received.append((trio.current_time(), orjson.loads(body)))
                status = 503 if len(received) <= failures else 200
                head = h11.Response(status_code=status, headers=[("content-length", "0")])
                await stream.send_all(
                    (http.send(head) or b"") + (http.send(h11.EndOfMessage()) or b"")
                )
                await stream.aclose()
                return

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(serve, listeners)


@pytest.mark.parametrize(("failures", "sent", "failed"), [(3, 1, 0), (10, 0, 1)])
async def test_a_webhook_is_retried_after_1_2_and_4_seconds(
    start_engine: StartEngine,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    failures: int,
    sent: int,
    failed: int,
) -> None:
    received: list[tuple[float, Any]] = []
    port = await nursery.start(webhook_server, received, failures)
    action = AlertAction(type="webhook", url=f"http://127.0.0.1:{port}/hooks/alert")
    rule = AlertRule(
        name="busy", metric="iii.workers.active", threshold=0, operator=">=", action=action
    )
    engine = await alert_engine(start_engine, rule)
    await call(engine, "engine::alerts::evaluate")
    with trio.fail_after(60):
        while otel_stats(engine)["alerts"]["actions_in_flight"]:
            await trio.sleep(0.1)
    assert len(received) == 4  # the first POST and three retries, then success or give up
    times = [at for at, _ in received]
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(times)]
    assert gaps == [1.0, 2.0, 4.0]
    body = received[0][1]
    assert set(body) == {"alert", "metric", "value", "threshold", "operator", "timestamp"}
    assert (body["alert"], body["metric"], body["operator"]) == ("busy", "iii.workers.active", ">=")
    webhooks = otel_stats(engine)["alerts"]["webhooks"]
    assert webhooks == {"sent": sent, "retries": 3, "failed": failed}


async def test_a_function_action_hears_firing_and_resolved(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    action = AlertAction(type="function", path="test::on_alert")
    rule = AlertRule(
        name="errs",
        metric="iii.invocations.error",
        threshold=0,
        window_seconds=15,
        cooldown_seconds=0,
        action=action,
    )
    engine = await alert_engine(start_engine, rule)
    failing(engine)
    heard: list[dict[str, Any]] = []

    async def on_alert(data: Any, ctx: CallContext) -> None:
        heard.append(data)

    engine.registry.add_engine_function(EngineFunction("test::on_alert", on_alert))
    await fail_times(engine, 2)
    await trio.sleep(10.5)  # the loop's first evaluation (no explicit evaluate)
    await trio.sleep(10)  # the next one: the errors left the 15 s window
    assert [(h["firing"], h["value"]) for h in heard] == [(True, 2.0), (False, 0.0)]
    assert set(heard[0]) == {"alert", "metric", "value", "threshold", "operator", "timestamp"} | {
        "firing"
    }
    assert otel_stats(engine)["alerts"]["function_calls"] == {"ok": 2, "failed": 0}
