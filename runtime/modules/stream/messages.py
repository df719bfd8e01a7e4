"""The stream module's JSON shapes (spec/modules.md §5.2-5.4), with no I/O.

Function inputs are checked here (a missing or ill-typed field is a
``deserialization_error``); event messages and client join/leave messages are built and
parsed here.
"""

from __future__ import annotations

from typing import Any

import attrs

from iii_trio.runtime.calls.errors import deserialization_error
from iii_trio.runtime.clock import now_ms


def required_str(function_id: str, data: Any, name: str) -> str:
    if not isinstance(data, dict):
        raise deserialization_error(function_id, "expected an object")
    value = data.get(name)
    if value is None:
        raise deserialization_error(function_id, f"missing field `{name}`")
    if not isinstance(value, str):
        raise deserialization_error(function_id, f"`{name}` must be a string")
    return value


def optional_str(function_id: str, data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise deserialization_error(function_id, f"`{name}` must be a string or null")
    return value


def required_key(function_id: str, data: dict[str, Any], name: str) -> Any:
    """A field that must be present; ``null`` is a valid value."""
    if name not in data:
        raise deserialization_error(function_id, f"missing field `{name}`")
    return data[name]


def event_message(
    stream_name: str, group_id: str, item_id: str | None, event: dict[str, Any]
) -> dict[str, Any]:
    """One change as clients and ``stream`` bindings receive it (§5.3)."""
    return {
        "type": "stream",
        "timestamp": now_ms(),
        "streamName": stream_name,
        "groupId": group_id,
        "id": item_id,
        "event": event,
    }


def is_event_message(value: Any) -> bool:
    """An event message as published over Redis (from this engine or another)."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("streamName"), str)
        and isinstance(value.get("groupId"), str)
        and (value.get("id") is None or isinstance(value.get("id"), str))
        and isinstance(value.get("event"), dict)
    )


@attrs.frozen
class ClientRequest:
    """A client's ``join`` or ``leave`` message (§5.4)."""

    type: str  # "join" | "leave"
    subscription_id: str
    stream_name: str
    group_id: str
    item_id: str | None

    def payload(self, context: Any) -> dict[str, Any]:
        """What ``stream:join`` / ``stream:leave`` bindings receive (snake_case)."""
        return {
            "subscription_id": self.subscription_id,
            "stream_name": self.stream_name,
            "group_id": self.group_id,
            "id": self.item_id,
            "context": context,
        }


def parse_client_request(message: Any) -> ClientRequest | None:
    """A join or leave request, or None for anything else (ignored, per the spec)."""
    if not isinstance(message, dict) or message.get("type") not in ("join", "leave"):
        return None
    data = message.get("data")
    if not isinstance(data, dict):
        return None
    subscription_id, stream_name, group_id, item_id = (
        data.get(name) for name in ("subscriptionId", "streamName", "groupId", "id")
    )
    if not (
        isinstance(subscription_id, str)
        and isinstance(stream_name, str)
        and isinstance(group_id, str)
        and (item_id is None or isinstance(item_id, str))
    ):
        return None
    return ClientRequest(message["type"], subscription_id, stream_name, group_id, item_id)
