"""OtelModule (spec/modules.md §9) on a real engine: trio-SDK workers, an official SDK worker,
raw telemetry frames, a real HTTP client, and a stand-in OTLP collector."""

from __future__ import annotations

import math
import re
import uuid
from typing import Any

import httpx
import orjson
import pytest
import trio
import trio.testing

from iii_trio.runtime.calls.invocation import CallContext, EngineFunction
from iii_trio.runtime.calls.registry import Binding
from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.cron.config import CronConfig
from iii_trio.runtime.modules.queue.config import QueueConfig
from iii_trio.runtime.modules.rest_api.config import RestApiConfig
from iii_trio.runtime.modules.state.config import StateConfig
from iii_trio.sdk import III
from tests.conformance.harness import sdk_worker
from tests.runtime.modules.observability.support import call, engine_exporting, otel_entry
from tests.runtime.modules.rest_api.support import routed
from tests.support.engine import StartEngine, worker_url
from tests.support.raw_worker import raw_worker
from tests.support.waiting import wait_until
from tests.support.ws import open_ws


def http_entry() -> ModuleEntry:
    config = RestApiConfig(port=0, host="127.0.0.1", default_timeout=5000)
    return ModuleEntry("rest_api", "modules::api::RestApiModule", "modules[0]", config)


def queue_entry() -> ModuleEntry:
    return ModuleEntry("queue", "modules::queue::QueueModule", "modules[3]", QueueConfig())


def state_entry() -> ModuleEntry:
    config = StateConfig()  # KvStore in memory
    return ModuleEntry("state", "modules::state::StateModule", "modules[1]", config)


def http_base(engine: Engine) -> str:
    module: Any = engine.modules["rest_api"]
    return f"http://127.0.0.1:{module.port}"


# --- logs ----------------------------------------------------------------------------------


@pytest.mark.slow  # an official SDK in its own process
async def test_official_sdk_log_and_engine_log_are_both_listed(start_engine: StartEngine) -> None:
    engine = await start_engine(modules=(otel_entry(),))
    async with sdk_worker("P25", worker_url(engine), "p25", bare=True) as worker:
        reply = await worker.request("log", level="warn", message="from p25", data={"k": 1})
        assert reply["ok"], reply
        async with III(worker_url(engine), worker_name="trio").connect() as iii:
            await iii.trigger("engine::log::info", {"message": "from engine", "data": {"n": 2}})

            async def both_listed() -> tuple[Any, dict[str, Any]] | None:
                listed = await iii.trigger("engine::logs::list", {})
                bodies = {record["body"]: record for record in listed["logs"]}
                return (listed, bodies) if {"from p25", "from engine"} <= set(bodies) else None

            # P25 batches logs for 100 ms, then sends a LOGS frame.
            listed, bodies = await wait_until(both_listed, what="both logs are listed", timeout=20)
    sdk_record, engine_record = bodies["from p25"], bodies["from engine"]
    assert (sdk_record["severity_number"], sdk_record["severity_text"]) == (13, "WARN")
    assert sdk_record["attributes"]["service.name"] == "py-worker"
    assert (engine_record["severity_number"], engine_record["severity_text"]) == (9, "INFO")
    assert engine_record["attributes"] == {"n": 2}
    assert engine_record["service_name"] == "iii-trio"
    assert listed["total"] == len(listed["logs"]) >= 2
    warnings = await call(engine, "engine::logs::list", {"severity_min": 13})
    assert [r["body"] for r in warnings["logs"]] == ["from p25"]


async def test_log_input_is_checked(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(otel_entry(),))
    async with raw_worker(worker_url(engine)) as worker:
        frame = await worker.call("engine::log::error", {"data": {}})
    assert frame["error"]["code"] == "deserialization_error"
    assert "message" in frame["error"]["message"]


# --- spans ---------------------------------------------------------------------------------


async def test_http_request_worker_and_state_call_form_one_trace(
    start_engine: StartEngine,
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = await start_engine(modules=(http_entry(), state_entry(), otel_entry()))
    worker = III(worker_url(engine), worker_name="api")

    @worker.function(id="api::save")
    async def save(request: dict[str, Any]) -> dict[str, Any]:
        await worker.trigger("state::set", {"scope": "s", "key": "k", "value": request["body"]})
        return {"status_code": 201, "body": {"saved": True}}

    worker.register_trigger("http", "api::save", {"api_path": "items/:id", "http_method": "POST"})
    async with worker.connect():
        await routed(engine, 1)
        async with httpx.AsyncClient(base_url=http_base(engine), timeout=10) as http:
            response = await http.post("/items/7", json={"x": 1})
    assert response.status_code == 201
    roots = await call(engine, "engine::traces::list", {"name": "POST"})
    assert roots["total"] == 1
    root = roots["spans"][0]
    assert root["name"] == "POST /items/:id"
    tree = await call(engine, "engine::traces::tree", {"trace_id": root["trace_id"]})
    [http_span] = tree["roots"]
    assert http_span["kind"] == "server"
    assert http_span["attributes"]["http.request.method"] == "POST"
    assert http_span["attributes"]["url.path"] == "/items/7"
    assert http_span["attributes"]["http.route"] == "/items/:id"
    assert http_span["attributes"]["http.response.status_code"] == 201
    [handler] = http_span["children"]
    assert handler["name"] == "handle_invocation api::save"
    assert handler["attributes"]["iii.caller"] == "http"
    [state_call] = handler["children"]
    assert state_call["name"] == "handle_invocation state::set"
    assert state_call["status"] == "ok"
    assert state_call["children"] == []
    assert {s["trace_id"] for s in (http_span, handler, state_call)} == {root["trace_id"]}


async def test_a_traceparent_from_the_caller_parents_the_span(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(otel_entry(),))
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with raw_worker(worker_url(engine)) as caller, raw_worker(worker_url(engine)) as target:
        await target.register("t::echo")
        await trio.sleep(0.05)
        invocation_id = str(uuid.uuid4())
        await caller.send(
            {
                "type": "invokefunction",
                "invocation_id": invocation_id,
                "function_id": "t::echo",
                "data": {},
                "traceparent": f"00-{trace_id}-{parent_id}-01",
                "baggage": "user=ada",
            }
        )
        invoke = await target.expect("invokefunction")
        await target.answer(invoke, {"ok": True}, error={"code": "boom", "message": "no"})
        await caller.expect("invocationresult")
    # The target continues the engine's span of this call; the baggage travels unchanged.
    assert invoke["traceparent"].startswith(f"00-{trace_id}-")
    assert invoke["baggage"] == "user=ada"
    listed = await call(engine, "engine::traces::list", {"trace_id": trace_id})
    [span] = listed["spans"]
    assert span["parent_span_id"] == parent_id
    assert invoke["traceparent"] == f"00-{trace_id}-{span['span_id']}-01"
    assert (span["status"], span["status_message"]) == ("error", "boom: no")


async def test_a_queue_job_is_a_span_over_its_delivery(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(queue_entry(), otel_entry()))
    handled = trio.Event()
    worker = III(worker_url(engine), worker_name="consumer")

    @worker.function(id="jobs::run")
    async def run(data: Any) -> None:
        handled.set()

    worker.register_trigger("queue", "jobs::run", {"topic": "work"})
    async with worker.connect():
        await wait_until(lambda: worker_bound(engine), what="the queue trigger is bound")
        await worker.trigger("enqueue", {"topic": "work", "data": {"n": 1}})
        with trio.fail_after(10):
            await handled.wait()

        async def job_spans() -> Any:
            query = {"name": "queue work", "search_all_spans": True}  # not a root: see below
            listed = await call(engine, "engine::traces::list", query)
            return listed if listed["spans"] else None

        listed = await wait_until(job_spans, what="the job's span is listed")
    [job] = listed["spans"]
    assert (job["name"], job["kind"], job["status"]) == ("queue work", "consumer", "ok")
    assert job["attributes"]["iii.function_id"] == "jobs::run"
    # The job continues its enqueuer's trace (issue 16, item 16): enqueue -> job -> handler.
    [tree] = (await call(engine, "engine::traces::tree", {"trace_id": job["trace_id"]}))["roots"]
    assert tree["name"] == "handle_invocation enqueue"
    [job_node] = tree["children"]
    assert job_node["name"] == "queue work"
    assert [child["name"] for child in job_node["children"]] == ["handle_invocation jobs::run"]


def worker_bound(engine: Engine) -> bool:
    return bool(engine.modules["queue"].introspect()["streams"])


# --- telemetry frames ----------------------------------------------------------------------


def _attr(key: str, value: Any) -> dict[str, Any]:
    kind = "intValue" if isinstance(value, int) else "stringValue"
    return {"key": key, "value": {kind: str(value) if kind == "intValue" else value}}


def mtrc_frame(worker_id: str, values: dict[str, int]) -> bytes:
    metrics = [
        {
            "name": name,
            "gauge": {
                "dataPoints": [{"asInt": str(value), "attributes": [_attr("worker.id", worker_id)]}]
            },
        }
        for name, value in values.items()
    ]
    body = {"resourceMetrics": [{"resource": {}, "scopeMetrics": [{"metrics": metrics}]}]}
    return b"MTRC" + orjson.dumps(body)


def otlp_frame(trace_id: str, span_id: str, name: str) -> bytes:
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": 3,
        "startTimeUnixNano": "1000000000",
        "endTimeUnixNano": "3000000000",
        "attributes": [_attr("n", 1)],
        "status": {"code": 1},
    }
    resource = {"attributes": [_attr("service.name", "node-worker")]}
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
    return b"OTLP" + orjson.dumps(body)


async def test_worker_telemetry_frames_are_ingested(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(otel_entry(metrics_max_count=3),))
    trace_id = uuid.uuid4().hex
    otel_url = worker_url(engine, "/otel")
    async with raw_worker(worker_url(engine)) as worker, open_ws(otel_url) as otel:
        await worker.register("w::f")
        await otel.send_message(mtrc_frame(worker.worker_id, {"iii.worker.memory.rss": 100}))
        await otel.send_message(b"MTRCnot json")
        await otel.send_message(mtrc_frame(worker.worker_id, {"a": 1, "b": 2, "c": 3}))
        await otel.send_message(otlp_frame(trace_id, "00f067aa0ba902b7", "GET /x"))
        # Frames on the worker's own socket are ingested too (N3's telemetry socket is a "/").
        await worker.send_raw(mtrc_frame(worker.worker_id, {"iii.worker.cpu.percent": 7}))
        await wait_until(
            lambda: engine.modules["observability"].introspect()["telemetry_frames"] >= 5,
            what="five telemetry frames are ingested",
        )
        assert (await worker.call("w::missing"))["error"]["code"] == "function_not_found"
        rows = (await worker.call("engine::workers::list", {}))["result"]["workers"]
    [row] = [r for r in rows if r["id"] == worker.worker_id]
    latest = row["latest_metrics"]
    expected = {"iii.worker.memory.rss": 100, "a": 1, "c": 3, "iii.worker.cpu.percent": 7}
    assert {k: latest[k] for k in expected} == expected
    metrics = await call(engine, "engine::metrics::list", {})
    assert [p["name"] for p in metrics["sdk_metrics"]] == ["b", "c", "iii.worker.cpu.percent"]
    health = await call(engine, "engine::health::check", {})
    assert health["components"]["metrics"]["details"]["dropped"] == 2
    assert health["components"]["otel"]["details"]["telemetry_rejected"] == 1
    [span] = (await call(engine, "engine::traces::list", {"trace_id": trace_id}))["spans"]
    assert (span["name"], span["kind"], span["service_name"]) == ("GET /x", "client", "node-worker")
    assert (span["duration_ms"], span["status"], span["attributes"]) == (2000.0, "ok", {"n": 1})


# --- bounds --------------------------------------------------------------------------------


async def test_rings_keep_the_newest_and_count_what_they_drop(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(otel_entry(logs_max_count=5, memory_max_spans=8),))
    for n in range(20):
        await call(engine, "engine::log::debug", {"message": f"m{n}"})
    listed = await call(engine, "engine::logs::list", {"limit": 2, "offset": 1})
    assert listed["total"] == 5
    assert [r["body"] for r in listed["logs"]] == ["m18", "m17"]
    health = await call(engine, "engine::health::check", {})
    components = health["components"]
    assert components["logs"]["details"]["dropped"] == 15
    assert components["logs"]["details"]["count"] == 5
    # one span per invocation: 20 log calls + the logs::list call
    assert components["spans"]["details"]["count"] == 8
    assert components["spans"]["details"]["dropped"] == 21 - 8
    assert {c["status"] for c in components.values()} == {"healthy"}
    await call(engine, "engine::logs::clear")
    assert (await call(engine, "engine::logs::list"))["total"] == 0


async def test_traces_need_the_memory_exporter(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(otel_entry(exporter="otlp"),))
    async with raw_worker(worker_url(engine)) as worker:
        frame = await worker.call("engine::traces::list", {})
        assert frame["error"]["code"] == "memory_exporter_not_enabled"
        logged = await worker.call("engine::log::info", {"message": "still kept"})
        assert "error" not in logged


# --- metrics -------------------------------------------------------------------------------

_SAMPLE = re.compile(
    r"^([a-zA-Z_:][a-zA-Z0-9_:]*)"
    r'(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(?:,(?=[a-zA-Z_]))?)*\})?'
    r" (\S+)$"
)

_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """A strict reader of the text format 0.0.4 (prometheus_client is not installed here):
    every family has one TYPE line before its samples, names and labels are well formed,
    values are numbers, and histograms have cumulative buckets ending at +Inf == _count."""
    assert text.endswith("\n")
    families: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    types: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, f"second TYPE line for {name}"
            types[name] = kind
            families[name] = []
            current = name
            continue
        match = _SAMPLE.match(line)
        assert match, f"malformed line {line!r}"
        name, labels_text, value = match.groups()
        # Every sample belongs to the family of the last TYPE line (families are not split).
        assert current is not None, f"sample {name} before any TYPE line"
        suffixes = ("_bucket", "_sum", "_count") if types[current] == "histogram" else ()
        assert name == current or name in {current + s for s in suffixes}, (
            f"sample {name} inside the {current} family"
        )
        family = current
        labels = dict(_LABEL.findall(labels_text or ""))
        families[family].append((name, labels, float(value)))
    for name, kind in types.items():
        if kind == "histogram":
            buckets = [(s[1]["le"], s[2]) for s in families[name] if s[0].endswith("_bucket")]
            counts = [count for _, count in buckets]
            assert counts == sorted(counts)
            assert buckets[-1][0] == "+Inf"
            [total] = [s[2] for s in families[name] if s[0] == f"{name}_count"]
            assert buckets[-1][1] == total
            assert not math.isnan(total)
    return families


async def test_metrics_endpoint_is_prometheus_text(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(http_entry(), queue_entry(), otel_entry()))
    async with raw_worker(worker_url(engine)) as worker:
        await worker.register("w::echo")
        await worker.send(
            {
                "type": "registertrigger",
                "id": "q1",
                "trigger_type": "queue",
                "function_id": "w::echo",
                "config": {"topic": "jobs"},
            }
        )
        await trio.sleep(0.05)
        for n in range(3):
            invocation_id = str(uuid.uuid4())
            await worker.invoke("w::echo", {"n": n}, invocation_id)
            invoke = await worker.expect("invokefunction")
            if n == 2:
                await worker.answer(invoke, error={"code": "bad", "message": "x"})
            else:
                await worker.answer(invoke, {"n": n})
            await worker.expect("invocationresult")
        await worker.send_raw(mtrc_frame(worker.worker_id, {"iii.worker.memory.rss": 5}))
        async with httpx.AsyncClient(base_url=http_base(engine), timeout=10) as http:

            async def scraped() -> httpx.Response | None:
                response = await http.get("/metrics")
                return response if "iii_worker_memory_rss" in response.text else None

            # The MTRC frame is read by the worker's reader, asynchronously.
            response = await wait_until(scraped, what="/metrics shows the worker's memory")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = parse_prometheus(response.text)

    def value(family: str, **labels: str) -> float:
        [sample] = [s[2] for s in families[family] if labels.items() <= s[1].items()]
        return sample

    assert value("iii_function_invocations_total", function_id="w::echo", status="success") == 2
    assert value("iii_function_invocations_total", function_id="w::echo", status="error") == 1
    assert value("iii_invocations_total", status="error") == 1
    assert value("iii_workers_active") == 1
    assert value("iii_workers_spawns_total") == 1
    assert value("iii_worker_memory_rss", worker_id=worker.worker_id) == 5
    assert value("iii_telemetry_dropped_total", store="logs") == 0
    assert value("iii_queue_depth", queue="jobs", function_id="w::echo") == 0
    metrics = await call(engine, "engine::metrics::list")
    invocations = metrics["engine_metrics"]["invocations"]
    assert invocations["by_function"]["w::echo"]["count"] == 3
    assert invocations["total"] >= 3
    assert invocations["error"] == 1


# --- OTLP export ---------------------------------------------------------------------------


async def test_otlp_export_posts_spans_and_logs(
    start_engine: StartEngine, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    engine, received = await engine_exporting(start_engine, nursery, "/otlp")
    await call(engine, "engine::log::error", {"message": "exported"})
    await wait_until(
        lambda: {path for path, _ in received} >= {"/otlp/v1/traces", "/otlp/v1/logs"},
        what="spans and logs are exported",
    )
    span_names = [
        span["name"]
        for path, body in received
        if path == "/otlp/v1/traces"
        for section in body["resourceSpans"]
        for scope in section["scopeSpans"]
        for span in scope["spans"]
    ]
    assert "handle_invocation engine::log::error" in span_names
    logs = [
        record
        for path, body in received
        if path == "/otlp/v1/logs"
        for section in body["resourceLogs"]
        for scope in section["scopeLogs"]
        for record in scope["logRecords"]
    ]
    assert [(r["body"], r["severityNumber"]) for r in logs] == [({"stringValue": "exported"}, 17)]
    health = await call(engine, "engine::health::check")
    assert health["components"]["otel"]["details"]["otlp_export"]["failed_batches"] == 0


# --- cron runs and official-SDK telemetry ----------------------------------------------------


async def test_a_cron_run_is_a_span_over_its_delivery(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    entry = ModuleEntry("cron", "modules::cron::CronModule", "modules[0]", CronConfig())
    engine = await start_engine(modules=(entry, otel_entry()))
    ran = trio.Event()

    async def record(data: Any, ctx: CallContext) -> None:
        ran.set()

    engine.registry.add_engine_function(EngineFunction("test::tick", record))
    engine.triggers.bind(
        Binding(None, "every-second", "cron", "test::tick", {"expression": "* * * * * *"})
    )
    await ran.wait()
    await trio.sleep(0.01)  # the run's span ends after its delivery returns
    listed = await call(engine, "engine::traces::list", {"name": "cron every-second"})
    run = listed["spans"][0]
    assert (run["name"], run["status"]) == ("cron every-second", "ok")
    assert run["attributes"] == {"iii.cron.job_id": "every-second", "iii.function_id": "test::tick"}
    [tree] = (await call(engine, "engine::traces::tree", {"trace_id": run["trace_id"]}))["roots"]
    assert [child["name"] for child in tree["children"]] == ["handle_invocation test::tick"]


@pytest.mark.slow  # an official SDK in its own process
async def test_official_sdk_spans_and_metrics_are_ingested(start_engine: StartEngine) -> None:
    engine = await start_engine(modules=(otel_entry(),))
    async with sdk_worker("P25", worker_url(engine), "p25") as worker:
        await wait_until(
            lambda: "p25::echo" in engine.registry.functions,
            what="P25 registers p25::echo",
            timeout=20,
        )
        # The engine calls a P25 function: P25 sends its "execute" span as an OTLP frame.
        assert await call(engine, "p25::echo", {"n": 1}) == {"n": 1}
        reply = await worker.request("metric", name="p25.jobs.done", value=3)
        assert reply["ok"], reply
        assert reply["result"]["flushed"], reply

        async def ingested() -> tuple[Any, list[Any], Any] | None:
            spans = await call(engine, "engine::traces::list", {"search_all_spans": True})
            sdk_spans = [s for s in spans["spans"] if s["service_name"] != "iii-trio"]
            metrics = await call(engine, "engine::metrics::list", {"metric_name": "p25.jobs.done"})
            return (spans, sdk_spans, metrics) if sdk_spans and metrics["sdk_metrics"] else None

        # Spans leave P25 in 100 ms batches.
        spans, sdk_spans, metrics = await wait_until(
            ingested, what="P25's spans and metric are ingested", timeout=20
        )
    [engine_span] = [s for s in spans["spans"] if s["name"] == "handle_invocation p25::echo"]
    same_trace = [s for s in sdk_spans if s["trace_id"] == engine_span["trace_id"]]
    assert same_trace, sdk_spans  # P25 continued the engine's trace
    assert same_trace[0]["parent_span_id"] == engine_span["span_id"]
    [point] = metrics["sdk_metrics"]
    assert (point["type"], point["value"]) == ("sum", 3)
