"""Sans-IO codec for the iii worker protocol (spec/protocol.md §1-§2).

Turns frames (text or bytes) into message objects and message objects into frame bytes.
No I/O and no trio here: the transport feeds frames in, the engine acts on the messages.

Tolerance rules (D1): unknown fields are ignored; an unknown ``type`` raises
:class:`UnknownMessageType` (the caller logs it at debug level and carries on); a frame that
is not JSON, not an object, misses a required field or has an ill-typed field raises
:class:`FrameRejected` with a one-line reason. ``invokefunction`` without ``data`` decodes
with ``data=None``. Absent and ``null`` optional fields are the same thing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, ClassVar, TypeAlias

import attrs
import cattrs
import orjson
from cattrs.gen import make_dict_unstructure_fn, override

TELEMETRY_PREFIXES = (b"OTLP", b"MTRC", b"LOGS")


class FrameRejected(ValueError):
    """The frame cannot be decoded into a message; ``reason`` says why, in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownMessageType(ValueError):
    """A well-formed JSON object whose ``type`` this engine does not know (ignored, D1)."""

    def __init__(self, message_type: object) -> None:
        super().__init__(f"unknown message type {message_type!r}")
        self.message_type = message_type


# --- message records ---------------------------------------------------------------------


@attrs.frozen
class ErrorBody:
    code: str
    message: str = ""
    stacktrace: str | None = None

    def as_dict(self) -> dict[str, str]:
        body = {"code": self.code, "message": self.message}
        if self.stacktrace is not None:
            body["stacktrace"] = self.stacktrace
        return body


@attrs.frozen
class Action:
    """``{"type":"void"}`` or ``{"type":"enqueue","queue":...}``."""

    type: str
    queue: str | None = None


@attrs.frozen
class RegisterFunction:
    TYPE: ClassVar[str] = "registerfunction"
    id: str
    description: str | None = None
    request_format: Any = None
    response_format: Any = None
    metadata: Any = None
    invocation: Any = None


@attrs.frozen
class UnregisterFunction:
    TYPE: ClassVar[str] = "unregisterfunction"
    id: str


@attrs.frozen
class RegisterTriggerType:
    TYPE: ClassVar[str] = "registertriggertype"
    id: str
    description: str | None = None
    trigger_request_format: Any = None
    call_request_format: Any = None


@attrs.frozen
class UnregisterTriggerType:
    TYPE: ClassVar[str] = "unregistertriggertype"
    id: str


@attrs.frozen
class RegisterTrigger:
    """Worker → engine (a binding) and engine → provider (delivering the binding)."""

    TYPE: ClassVar[str] = "registertrigger"
    id: str
    trigger_type: str
    function_id: str
    config: Any
    metadata: Any = None


@attrs.frozen
class UnregisterTrigger:
    TYPE: ClassVar[str] = "unregistertrigger"
    id: str
    trigger_type: str | None = None


@attrs.frozen
class TriggerRegistrationResult:
    TYPE: ClassVar[str] = "triggerregistrationresult"
    id: str
    trigger_type: str | None = None
    function_id: str | None = None
    error: ErrorBody | None = None


@attrs.frozen
class InvokeFunction:
    TYPE: ClassVar[str] = "invokefunction"
    function_id: str
    # No default marker: a missing ``data`` is delivered as null (D1), so it is always encoded.
    data: Any = None
    invocation_id: str | None = None
    action: Action | None = None
    traceparent: str | None = None
    baggage: str | None = None
    metadata: Any = None


@attrs.frozen
class InvocationResult:
    """``function_id`` is required by the spec but tolerated when missing: the engine knows
    the function from the invocation, and dropping a result would leave its caller waiting."""

    TYPE: ClassVar[str] = "invocationresult"
    invocation_id: str
    function_id: str | None = None
    result: Any = None
    error: ErrorBody | None = None
    traceparent: str | None = None
    baggage: str | None = None


@attrs.frozen
class RegisterService:
    TYPE: ClassVar[str] = "registerservice"
    id: str
    name: str | None = None
    description: str | None = None
    parent_service_id: str | None = None


@attrs.frozen
class Reattach:
    TYPE: ClassVar[str] = "reattach"
    previous_worker_id: str
    reattach_token: str | None = None


@attrs.frozen
class Ping:
    TYPE: ClassVar[str] = "ping"


@attrs.frozen
class Pong:
    TYPE: ClassVar[str] = "pong"


@attrs.frozen
class WorkerRegistered:
    TYPE: ClassVar[str] = "workerregistered"
    worker_id: str
    reattach_token: str


@attrs.frozen
class Telemetry:
    """A binary telemetry frame: ``kind`` is OTLP, MTRC or LOGS; ``body`` is OTLP JSON."""

    kind: str
    body: bytes


Message: TypeAlias = (
    RegisterFunction
    | UnregisterFunction
    | RegisterTriggerType
    | UnregisterTriggerType
    | RegisterTrigger
    | UnregisterTrigger
    | TriggerRegistrationResult
    | InvokeFunction
    | InvocationResult
    | RegisterService
    | Reattach
    | Ping
    | Pong
    | WorkerRegistered
)

_MESSAGE_CLASSES: tuple[type[Any], ...] = (
    RegisterFunction,
    UnregisterFunction,
    RegisterTriggerType,
    UnregisterTriggerType,
    RegisterTrigger,
    UnregisterTrigger,
    TriggerRegistrationResult,
    InvokeFunction,
    InvocationResult,
    RegisterService,
    Reattach,
    Ping,
    Pong,
    WorkerRegistered,
)
_BY_TYPE: dict[str, type[Any]] = {cls.TYPE: cls for cls in _MESSAGE_CLASSES}


# --- the converter -------------------------------------------------------------------------


def _strict(expected: type[Any], label: str) -> Any:
    def structure(value: object, _: type[Any]) -> Any:
        # bool is an int subclass; a JSON true is never a valid integer here.
        if type(value) is not expected and not (expected is float and type(value) is int):
            raise TypeError(f"expected {label}, got {_json_kind(value)}")
        return value

    return structure


def _json_kind(value: object) -> str:
    return {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        list: "array",
        dict: "object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=False)
    converter.register_structure_hook(str, _strict(str, "a string"))
    converter.register_structure_hook(int, _strict(int, "an integer"))
    converter.register_structure_hook(bool, _strict(bool, "a boolean"))
    converter.register_structure_hook(float, _strict(float, "a number"))
    for cls in (ErrorBody, Action, *_MESSAGE_CLASSES):
        # Optional fields that are None are left out of the frame (both SDK families do the
        # same); ``data`` of an invoke is always written, null included.
        overrides = {
            field.name: override(omit_if_default=True)
            for field in attrs.fields(cls)
            if field.default is None and not (cls is InvokeFunction and field.name == "data")
        }
        unstructure: Any = make_dict_unstructure_fn(cls, converter, **overrides)  # type: ignore[arg-type]
        converter.register_unstructure_hook(cls, unstructure)
    return converter


converter = _make_converter()


# --- the one JSON depth limit --------------------------------------------------------------

MAX_JSON_DEPTH = 128
"""The deepest JSON the engine accepts (arrays and objects nested in each other), wherever it
decodes JSON: what it accepts it can always write back. orjson reads 1,024 levels but
writes only 254, so a value accepted deeper than that fails later, when it is sent on; 128
(serde_json's own limit, so the reference engine's too) leaves room for the envelopes a
value travels in (an invoke frame, an HTTP result, a stored row)."""

_ORJSON_WRITE_DEPTH = 254  # orjson.dumps raises TypeError one level deeper


class JsonRejected(ValueError):
    """A JSON document the engine does not take in; ``reason`` says why, in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PayloadRejected(JsonRejected):
    """Valid JSON outside the policy (nested deeper than :data:`MAX_JSON_DEPTH`), answered
    with ``invalid_payload`` (HTTP: 400)."""

    code = "invalid_payload"


def loads(raw: str | bytes | bytearray) -> Any:
    """``orjson.loads`` under the depth limit: :class:`PayloadRejected` past
    :data:`MAX_JSON_DEPTH` (orjson's own 1,024 included), :class:`JsonRejected` for a text
    that is not JSON. A ``bytearray`` (an HTTP body as it was read) is parsed in place.

    Nearly every text opens fewer brackets than the limit, which two ``count`` calls prove;
    otherwise orjson itself measures: the value, wrapped in as many arrays as the limit
    leaves below orjson's write limit, encodes only if it is shallow enough (a C pass,
    a few percent of the parse)."""
    too_deep = f"nests deeper than {MAX_JSON_DEPTH} levels"
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if exc.msg.startswith("depth limit"):
            raise PayloadRejected(too_deep) from None
        raise JsonRejected(f"not valid JSON ({exc.msg})") from None
    if isinstance(raw, str):
        opened = raw.count("[") + raw.count("{")
    else:
        opened = raw.count(b"[") + raw.count(b"{")
    if opened > MAX_JSON_DEPTH:
        wrapped = value
        for _ in range(_ORJSON_WRITE_DEPTH - MAX_JSON_DEPTH):
            wrapped = [wrapped]
        try:
            orjson.dumps(wrapped)
        except TypeError:
            raise PayloadRejected(too_deep) from None
    return value


# --- decoding ------------------------------------------------------------------------------


def decode(frame: str | bytes) -> Message | Telemetry:
    """Decode one WebSocket message (text as ``str``, binary as ``bytes``)."""
    if isinstance(frame, bytes) and frame[:4] in TELEMETRY_PREFIXES:
        return Telemetry(kind=frame[:4].decode("ascii"), body=frame[4:])
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise FrameRejected(f"not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise FrameRejected(f"a message must be a JSON object, got {_json_kind(obj)}")
    return decode_object(obj)


def decode_object(obj: dict[str, Any]) -> Message:
    message_type = obj.get("type")
    # The two messages of every call take a hand-written path (cattrs' generic one is a
    # few times slower); any frame it is not sure about goes the generic way, which also
    # words the errors.
    fast: Message | None = None
    if message_type == "invokefunction":
        fast = _invoke_or_none(obj)
    elif message_type == "invocationresult":
        fast = _result_or_none(obj)
    if fast is not None:
        return fast
    cls = _BY_TYPE.get(message_type) if isinstance(message_type, str) else None
    if cls is None:
        if message_type is None:
            raise FrameRejected("missing required field 'type'")
        raise UnknownMessageType(message_type)
    try:
        message: Message = converter.structure(obj, cls)
    except cattrs.ClassValidationError as exc:
        raise FrameRejected(f"{message_type}: {_describe(exc)}") from None
    return message


def _optional_str(value: object) -> bool:
    return value is None or type(value) is str


def _invoke_or_none(obj: dict[str, Any]) -> InvokeFunction | None:
    """An ``invokefunction`` without ``action`` whose fields are well typed, else None."""
    get = obj.get
    function_id, invocation_id = get("function_id"), get("invocation_id")
    traceparent, baggage = get("traceparent"), get("baggage")
    if type(function_id) is not str or get("action") is not None:
        return None
    if not (_optional_str(invocation_id) and _optional_str(traceparent) and _optional_str(baggage)):
        return None
    return InvokeFunction(
        function_id, get("data"), invocation_id, None, traceparent, baggage, get("metadata")
    )


def _result_or_none(obj: dict[str, Any]) -> InvocationResult | None:
    """An ``invocationresult`` without ``error`` whose fields are well typed, else None."""
    get = obj.get
    invocation_id, function_id = get("invocation_id"), get("function_id")
    traceparent, baggage = get("traceparent"), get("baggage")
    if type(invocation_id) is not str or get("error") is not None:
        return None
    if not (_optional_str(function_id) and _optional_str(traceparent) and _optional_str(baggage)):
        return None
    return InvocationResult(invocation_id, function_id, get("result"), None, traceparent, baggage)


def _describe(exc: BaseException) -> str:
    """One line from cattrs' nested validation errors: the first field that failed."""
    path: list[str] = []
    while isinstance(exc, cattrs.ClassValidationError):
        inner = exc.exceptions[0]
        notes = getattr(inner, "__notes__", [])
        if notes:
            # cattrs notes read "Structuring class X @ attribute name".
            path.append(str(notes[0]).rsplit(" ", 1)[-1])
        exc = inner
    field = ".".join(path) or "?"
    if isinstance(exc, KeyError):
        return f"missing required field '{field}'"
    return f"field '{field}': {exc}"


# --- encoding ------------------------------------------------------------------------------


def to_dict(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = {"type": message.TYPE}
    body.update(converter.unstructure(message))
    return body


def encode(message: Message) -> bytes:
    """The frame text (UTF-8 JSON) of one message."""
    return orjson.dumps(to_dict(message))


def encode_invoke(
    invocation_id: str,
    function_id: str,
    data: Any,
    *,
    traceparent: str | None = None,
    baggage: str | None = None,
    metadata: Any = None,
) -> bytes:
    """Engine → provider ``invokefunction``. The routing hot path builds the frame directly."""
    body: dict[str, Any] = {
        "type": "invokefunction",
        "invocation_id": invocation_id,
        "function_id": function_id,
        "data": data,
    }
    if traceparent is not None:
        body["traceparent"] = traceparent
    if baggage is not None:
        body["baggage"] = baggage
    if metadata is not None:
        body["metadata"] = metadata
    return orjson.dumps(body)


def encode_result(
    invocation_id: str,
    function_id: str,
    *,
    result: Any = None,
    error: ErrorBody | None = None,
    traceparent: str | None = None,
    baggage: str | None = None,
) -> bytes:
    """Engine → caller ``invocationresult``; ``result`` is omitted when null."""
    body: dict[str, Any] = {
        "type": "invocationresult",
        "invocation_id": invocation_id,
        "function_id": function_id,
    }
    if error is not None:
        body["error"] = error.as_dict()
    elif result is not None:
        body["result"] = result
    if traceparent is not None:
        body["traceparent"] = traceparent
    if baggage is not None:
        body["baggage"] = baggage
    return orjson.dumps(body)


def encode_json(value: Any) -> bytes:
    return orjson.dumps(value)


# --- ids -------------------------------------------------------------------------------------

# Random (version 4) UUIDs, as every SDK sends them (spec/protocol.md: `uuid`). str(uuid4())
# costs a getrandom() call and a UUID object per id, about a tenth of a caller's CPU per
# call under load; these come from one getrandom() per 64 ids, with the version and variant
# bits set as RFC 9562 §5.4 says.
_UUID_CLEAR = ~((0xF << 76) | (0x3 << 62))  # the version (4 bits) and variant (2 bits)
_UUID_SET = (0x4 << 76) | (0x2 << 62)  # version 4, variant 0b10


def _uuid4_strings() -> Iterator[str]:
    while True:
        block = os.urandom(16 * 64)
        for start in range(0, len(block), 16):
            value = int.from_bytes(block[start : start + 16], "big") & _UUID_CLEAR | _UUID_SET
            h = f"{value:032x}"
            yield f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_uuids = _uuid4_strings()


def new_uuid() -> str:
    """A fresh random UUID in canonical form (lower-case, hyphenated)."""
    return next(_uuids)
