"""The stream module's JSON messages (spec/modules.md §5.3-5.4), with no I/O: event
messages and client join/leave messages are built and parsed here (function inputs are
declared in :mod:`.inputs`)."""

from __future__ import annotations

from typing import Any

import attrs

from iii_trio.runtime.clock import now_ms


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
