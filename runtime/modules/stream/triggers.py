"""The stream module's trigger types (spec/modules.md §5.5)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iii_trio.runtime.calls import inputs
from iii_trio.runtime.modules.stream.inputs import StreamTriggerConfig

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
        inputs.structure_config(binding.config, StreamTriggerConfig)
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
