"""The sans-IO codec: every message both ways, and every malformed case (D1)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from iii_trio.runtime.wire import protocol as p

UUID = "b2159e90-3d8c-4a51-8f0e-6c1b8e2f4a77"


def roundtrip(message: p.Message) -> p.Message | p.Telemetry:
    return p.decode(p.encode(message))


@pytest.mark.parametrize(
    "message",
    [
        p.RegisterFunction(id="node::echo", description="echo", metadata={"category": "x"}),
        p.RegisterFunction(id="f", request_format={"type": "object"}, response_format=[1]),
        p.UnregisterFunction(id="node::echo"),
        p.RegisterTriggerType(id="ntype", description="custom"),
        p.UnregisterTriggerType(id="ntype"),
        p.RegisterTrigger(id=UUID, trigger_type="http", function_id="api::get", config={"a": 1}),
        p.UnregisterTrigger(id=UUID, trigger_type="http"),
        p.TriggerRegistrationResult(
            id=UUID, trigger_type="cron", function_id="j", error=p.ErrorBody("x", "bad")
        ),
        p.InvokeFunction(function_id="f", data={"a": 1}, invocation_id=UUID),
        p.InvokeFunction(function_id="f", data=None, action=p.Action("void")),
        p.InvokeFunction(
            function_id="f", data=1, invocation_id=UUID, action=p.Action("enqueue", "q")
        ),
        p.InvocationResult(invocation_id=UUID, function_id="f", result={"ok": True}),
        p.InvocationResult(
            invocation_id=UUID,
            function_id="f",
            error=p.ErrorBody("invocation_failed", "boom", "at x"),
        ),
        p.RegisterService(id="billing", name="billing"),
        p.Reattach(previous_worker_id=UUID, reattach_token="tok"),
        p.Ping(),
        p.Pong(),
        p.WorkerRegistered(worker_id=UUID, reattach_token="tok"),
    ],
)
def test_every_message_round_trips(message: p.Message) -> None:
    assert roundtrip(message) == message


def test_type_comes_first_and_absent_optionals_are_omitted() -> None:
    frame = orjson.loads(p.encode(p.RegisterFunction(id="x")))
    assert list(frame) == ["type", "id"]


def test_invoke_always_carries_data_even_null() -> None:
    frame = orjson.loads(p.encode(p.InvokeFunction(function_id="f", invocation_id=UUID)))
    assert frame["data"] is None


def test_missing_data_decodes_as_null() -> None:
    message = p.decode(f'{{"type":"invokefunction","function_id":"f","invocation_id":"{UUID}"}}')
    assert message == p.InvokeFunction(function_id="f", data=None, invocation_id=UUID)


def test_null_invocation_id_is_void() -> None:
    message = p.decode('{"type":"invokefunction","function_id":"f","invocation_id":null,"data":1}')
    assert isinstance(message, p.InvokeFunction)
    assert message.invocation_id is None


def test_unknown_fields_are_ignored() -> None:
    text = orjson.dumps(
        {
            "type": "registertrigger",
            "id": UUID,
            "trigger_type": "ntype",
            "function_id": "p::echo",
            "config": {},
            "message_type": "registertrigger",
            "namespace": "default",
        }
    )
    assert p.decode(text) == p.RegisterTrigger(
        id=UUID, trigger_type="ntype", function_id="p::echo", config={}
    )


def test_binary_json_frames_decode_like_text() -> None:
    assert p.decode(b'{"type":"ping"}') == p.Ping()


@pytest.mark.parametrize("prefix", ["OTLP", "MTRC", "LOGS"])
def test_telemetry_prefixes(prefix: str) -> None:
    assert p.decode(prefix.encode() + b'{"x":1}') == p.Telemetry(kind=prefix, body=b'{"x":1}')


def test_unknown_type_is_its_own_error() -> None:
    with pytest.raises(p.UnknownMessageType) as info:
        p.decode('{"type":"observerregistered","x":1}')
    assert info.value.message_type == "observerregistered"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json at all", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1,2]", "a message must be a JSON object, got array"),
        ('"text"', "a message must be a JSON object, got string"),
        ("42", "a message must be a JSON object, got integer"),
        ("{}", "missing required field 'type'"),
        ('{"type": 7}', None),
        ('{"type":"invokefunction"}', "invokefunction: missing required field 'function_id'"),
        (
            '{"type":"invokefunction","function_id":3}',
            "invokefunction: field 'function_id': expected a string, got integer",
        ),
        (
            '{"type":"registerfunction","id":true}',
            "registerfunction: field 'id': expected a string, got boolean",
        ),
        (
            '{"type":"registertrigger","id":"a","trigger_type":"t","function_id":"f"}',
            "registertrigger: missing required field 'config'",
        ),
        (
            '{"type":"invokefunction","function_id":"f","action":{"type":5}}',
            "invokefunction: field 'action.type': expected a string, got integer",
        ),
        (
            '{"type":"invocationresult","function_id":"f"}',
            "invocationresult: missing required field 'invocation_id'",
        ),
        ('{"type":"invocationresult","invocation_id":"a","error":"boom"}', None),
        ('{"type":"reattach"}', "reattach: missing required field 'previous_worker_id'"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
    ],
)
def test_malformed_frames_are_rejected_with_a_reason(
    frame: str | bytes, reason: str | None
) -> None:
    with pytest.raises((p.FrameRejected, p.UnknownMessageType)) as info:
        p.decode(frame)
    if reason is not None:
        assert isinstance(info.value, p.FrameRejected)
        assert info.value.reason.startswith(reason), info.value.reason


def test_a_non_string_type_is_unknown_not_a_crash() -> None:
    with pytest.raises(p.UnknownMessageType):
        p.decode('{"type": 7}')


def test_result_without_function_id_is_tolerated() -> None:
    message = p.decode('{"type":"invocationresult","invocation_id":"a","result":1}')
    assert message == p.InvocationResult(invocation_id="a", result=1)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"result": {"a": 1}}, {"result": {"a": 1}}),
        ({"result": None}, {}),
        (
            {"error": p.ErrorBody("timeout", "late")},
            {"error": {"code": "timeout", "message": "late"}},
        ),
        ({"result": 0}, {"result": 0}),
    ],
)
def test_encode_result_omits_null_result(kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    frame = orjson.loads(p.encode_result(UUID, "f", **kwargs))
    assert frame == {
        "type": "invocationresult",
        "invocation_id": UUID,
        "function_id": "f",
        **expected,
    }


def test_encode_invoke_includes_trace_context_only_when_given() -> None:
    plain = orjson.loads(p.encode_invoke(UUID, "f", {"a": 1}))
    assert plain == {
        "type": "invokefunction",
        "invocation_id": UUID,
        "function_id": "f",
        "data": {"a": 1},
    }
    traced = orjson.loads(p.encode_invoke(UUID, "f", None, traceparent="00-x", metadata={"m": 1}))
    assert traced["traceparent"] == "00-x"
    assert traced["metadata"] == {"m": 1}
    assert "baggage" not in traced


@pytest.mark.slow  # a fresh interpreter in its own process
def test_the_codec_does_no_io() -> None:
    import subprocess
    import sys

    code = "import sys, iii_trio.runtime.wire.protocol; sys.exit('trio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "invokefunction", "function_id": "f", "invocation_id": UUID, "data": {"a": [1]}},
        {"type": "invokefunction", "function_id": "f"},
        {"type": "invokefunction", "function_id": "f", "invocation_id": None, "data": None},
        {"type": "invokefunction", "function_id": "f", "traceparent": "00-a", "baggage": "k=v"},
        {"type": "invokefunction", "function_id": "f", "metadata": {"m": 1}, "extra": 1},
        {"type": "invokefunction", "function_id": "f", "action": {"type": "void"}},
        {"type": "invokefunction", "function_id": "f", "traceparent": 5},
        {"type": "invokefunction", "function_id": "f", "invocation_id": True},
        {"type": "invokefunction", "function_id": None},
        {"type": "invocationresult", "invocation_id": "a", "function_id": "f", "result": [1]},
        {"type": "invocationresult", "invocation_id": "a"},
        {"type": "invocationresult", "invocation_id": "a", "error": {"code": "x"}},
        {"type": "invocationresult", "invocation_id": "a", "baggage": "k=v", "traceparent": None},
        {"type": "invocationresult", "invocation_id": "a", "function_id": 1},
        {"type": "invocationresult", "invocation_id": 7, "result": 1},
    ],
)
def test_the_fast_path_of_calls_decodes_like_the_converter(obj: dict[str, Any]) -> None:
    cls = p.InvokeFunction if obj["type"] == "invokefunction" else p.InvocationResult
    try:
        expected: Any = p.converter.structure(obj, cls)
    except Exception:
        expected = p.FrameRejected
    try:
        got: Any = p.decode_object(obj)
    except p.FrameRejected:
        got = p.FrameRejected
    assert got == expected


def test_new_uuid_is_a_canonical_random_uuid() -> None:
    ids = [p.new_uuid() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
