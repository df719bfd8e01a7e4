"""The stream module's trigger types (spec/modules.md §5.5)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iii_trio.runtime.calls.errors import TriggerConfigError

if TYPE_CHECKING:
    from iii_trio.runtime.calls.registry import Binding


class StreamTrigger:
    """``stream``: config ``{stream_name, group_id?, item_id?, condition_function_id?}``;
    an empty or missing ``group_id`` / ``item_id`` matches any."""

    id = "stream"
    description = "Fires after a stream item changes or a custom stream event is sent"

    def __init__(self) -> None:
        self.bindings: list[Binding] = []

    def bind(self, binding: Binding) -> None:
        config = binding.config
        if not isinstance(config, dict):
            raise TriggerConfigError("stream trigger config must be an object")
        stream_name = config.get("stream_name")
        if not isinstance(stream_name, str) or not stream_name:
            raise TriggerConfigError("stream trigger needs a non-empty string 'stream_name'")
        for field in ("group_id", "item_id", "condition_function_id"):
            if config.get(field) is not None and not isinstance(config[field], str):
                raise TriggerConfigError(f"stream trigger '{field}' must be a string")
        self.bindings.append(binding)

    def unbind(self, binding: Binding) -> None:
        if binding in self.bindings:
            self.bindings.remove(binding)

    def matching(self, message: dict[str, Any]) -> list[Binding]:
        def matches(config: dict[str, Any]) -> bool:
            return (
                config["stream_name"] == message["streamName"]
                and config.get("group_id") in (None, "", message["groupId"])
                and config.get("item_id") in (None, "", message["id"])
            )

        return [b for b in self.bindings if matches(b.config)]


class SubscriptionTrigger:
    """``stream:join`` / ``stream:leave``: config ignored; every binding is called, in
    registration order, for each client join or leave."""

    def __init__(self, type_id: str, description: str) -> None:
        self.id = type_id
        self.description = description
        self.bindings: list[Binding] = []

    def bind(self, binding: Binding) -> None:
        self.bindings.append(binding)

    def unbind(self, binding: Binding) -> None:
        if binding in self.bindings:
            self.bindings.remove(binding)
