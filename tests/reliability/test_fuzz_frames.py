"""Hypothesis against a live engine process on the worker port: valid frames, frames with
wrong field types, mutated frames, random text and bytes, deep nesting, huge numbers,
invalid UTF-8 and huge strings. After every input the engine is still running, logged no
traceback, and a separate caller/target pair still completes a call through it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from iii_trio.runtime.wire import frames as ws_frames
from tests.reliability.fuzz_settings import fuzz_settings
from tests.reliability.support import record
from tests.reliability.sync_clients import (
    Closed,
    EngineServer,
    GoodPair,
    SyncWorker,
    engine_server,
)

EXAMPLES = 400
tried: Counter[str] = Counter()
closed: dict[str, int] = {}

# -- building blocks -------------------------------------------------------------------------

leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_value = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=25,
)
# Never "good::": the fuzzer must not steal the good pair's calls.
function_id = st.text(max_size=24).map(lambda s: f"fz::{s}") | st.sampled_from(
    [
        "",
        "nope",
        "engine::functions::list",
        "engine::workers::register",
        "engine::workers::list",
        "engine::channels::create",
        "engine::invocations::get",
        "engine::actors::tree",
    ]
)
trigger_type = st.sampled_from(
    ["http", "cron", "state", "queue", "subscribe", "engine::functions-available", "fz-type"]
) | st.text(max_size=12)
optional = st.none() | json_value
uuidish = st.uuids().map(str) | st.text(max_size=40)

MESSAGES = {
    "registerfunction": {"id": function_id, "description": optional, "metadata": optional},
    "unregisterfunction": {"id": function_id},
    "invokefunction": {
        "invocation_id": st.none() | uuidish,
        "function_id": function_id,
        "data": json_value,
        "action": st.none()
        | st.fixed_dictionaries({"type": st.sampled_from(["void", "enqueue", "x"])})
        | json_value,
        "traceparent": st.none() | st.text(max_size=60),
        "metadata": optional,
    },
    "invocationresult": {
        "invocation_id": uuidish,
        "function_id": function_id,
        "result": optional,
        "error": st.none()
        | st.fixed_dictionaries({"code": st.text(max_size=10), "message": st.text(max_size=20)})
        | json_value,
    },
    "registertrigger": {
        "id": uuidish,
        "trigger_type": trigger_type,
        "function_id": function_id,
        "config": json_value,
    },
    "unregistertrigger": {"id": uuidish, "trigger_type": trigger_type},
    "registertriggertype": {"id": trigger_type, "description": optional},
    "unregistertriggertype": {"id": trigger_type},
    "triggerregistrationresult": {
        "id": uuidish,
        "trigger_type": trigger_type,
        "function_id": function_id,
        "error": optional,
    },
    "reattach": {"previous_worker_id": uuidish, "reattach_token": st.none() | st.text()},
    "registerservice": {"id": st.text(max_size=20), "name": optional},
    "ping": {},
}


def message(kind: str) -> st.SearchStrategy[dict[str, object]]:
    fields = MESSAGES[kind]
    return st.fixed_dictionaries({"type": st.just(kind)}, optional=fields)


valid_frame = st.sampled_from(sorted(MESSAGES)).flatmap(message)
# Right field names, any values (wrong types included).
wrong_types = st.sampled_from(sorted(MESSAGES)).flatmap(
    lambda kind: st.fixed_dictionaries(
        {"type": st.just(kind)}, optional=dict.fromkeys(MESSAGES[kind], json_value)
    )
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(orjson.dumps(draw(valid_frame)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        if op == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 32))] * draw(st.integers(2, 50))
    return bytes(data)


def invoke_with(raw_data: str) -> bytes:
    return (
        '{"type":"invokefunction","invocation_id":"fz","function_id":"fz::x","data":'
        + raw_data
        + "}"
    ).encode()


deep = st.integers(100, 200_000).flatmap(
    lambda n: st.sampled_from(
        ["[" * n + "]" * n, '{"a":' * n + "1" + "}" * n, "[" * n]  # the last never closes
    )
)
huge_number = st.integers(min_value=2**64, max_value=10**400).map(str) | st.sampled_from(
    ["1e400", "-1e400", "1" * 5000, "0." + "0" * 5000 + "1", "NaN", "Infinity", "-0"]
)
invalid_utf8 = st.binary(min_size=1, max_size=64).map(lambda b: b'{"type":"ping","x":"' + b + b'"}')
huge_string = st.integers(100_000, 4_000_000).map(lambda n: invoke_with('"' + "x" * n + '"'))

TEXT = ws_frames.OP_TEXT
BINARY = ws_frames.OP_BINARY
inputs = st.one_of(
    valid_frame.map(lambda f: ("valid", TEXT, orjson.dumps(f))),
    wrong_types.map(lambda f: ("wrong types", TEXT, orjson.dumps(f))),
    mutated().map(lambda b: ("mutated", TEXT, b)),
    st.text(max_size=300).map(lambda t: ("random text", TEXT, t.encode())),
    st.binary(max_size=300).map(lambda b: ("random bytes as text", TEXT, b)),
    st.binary(max_size=300).map(lambda b: ("random binary", BINARY, b)),
    st.sampled_from([b"OTLP", b"MTRC", b"LOGS"]).flatmap(
        lambda p: st.binary(max_size=200).map(lambda b: ("telemetry", BINARY, p + b))
    ),
    deep.map(lambda raw: ("deep nesting", TEXT, invoke_with(raw))),
    huge_number.map(lambda raw: ("huge number", TEXT, invoke_with(raw))),
    invalid_utf8.map(lambda b: ("invalid utf-8", TEXT, b)),
    huge_string.map(lambda b: ("huge string", TEXT, b)),
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineServer]:
    directory: Path = tmp_path_factory.mktemp("fuzz-frames")
    with engine_server(directory, "default_timeout: 2000\n") as server:
        yield server
        server.assert_healthy()
    record("fuzz_frames", inputs=sum(tried.values()), by_kind=dict(tried), **closed)


class Fuzzer:
    def __init__(self, engine: EngineServer) -> None:
        self.engine = engine
        self.good = GoodPair(engine.port)
        self.conn: SyncWorker | None = None
        self.closed_by_engine = 0

    def send(self, opcode: int, payload: bytes) -> None:
        if self.conn is None or self.conn.closed:
            if self.conn is not None:
                self.conn.close()
            self.conn = SyncWorker(self.engine.port)  # a fresh handshake works too
        try:
            self.conn.send_frame(payload, opcode)
            self.conn.drain()
        except Closed:
            self.closed_by_engine += 1


@pytest.fixture(scope="module")
def fuzzer(engine: EngineServer) -> Iterator[Fuzzer]:
    fuzzer = Fuzzer(engine)
    yield fuzzer
    closed["closed_by_engine"] = fuzzer.closed_by_engine
    closed["good_calls"] = fuzzer.good.calls
    fuzzer.good.close()
    if fuzzer.conn is not None:
        fuzzer.conn.close()


@fuzz_settings(EXAMPLES)
@given(inputs)
def test_no_frame_hurts_the_engine_or_another_connection(
    fuzzer: Fuzzer, case: tuple[str, int, bytes]
) -> None:
    kind, opcode, payload = case
    tried[kind] += 1
    fuzzer.send(opcode, payload)
    fuzzer.good.check()
    fuzzer.engine.assert_healthy()
