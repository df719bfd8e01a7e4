"""Settings of the PubSubModule (spec/modules.md §7)."""

from __future__ import annotations

import attrs

from iii_trio.runtime.config.schema import Choice, choice_of
from iii_trio.runtime.modules.storage.config import RedisAdapterConfig


@attrs.frozen(kw_only=True)
class LocalPubSubConfig:
    """PubSub LocalAdapter: in-process, no config."""


PubSubAdapter = LocalPubSubConfig | RedisAdapterConfig

PUBSUB_ADAPTERS = (
    Choice("local", LocalPubSubConfig, ("modules::pubsub::LocalAdapter",)),
    Choice("redis", RedisAdapterConfig, ("modules::pubsub::RedisAdapter",), ("redis",)),
)


@attrs.frozen(kw_only=True)
class PubSubConfig:
    """PubSubModule (§7)."""

    adapter: PubSubAdapter = attrs.field(
        factory=LocalPubSubConfig, metadata=choice_of(PUBSUB_ADAPTERS, "pubsub adapter")
    )


CHOICE = Choice("pubsub", PubSubConfig, ("modules::pubsub::PubSubModule",), ("iii-pubsub",))
