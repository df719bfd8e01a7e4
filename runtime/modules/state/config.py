"""Settings of the StateModule (spec/modules.md §4.1)."""

from __future__ import annotations

import attrs

from iii_trio.runtime.config.schema import Choice, choice_of
from iii_trio.runtime.modules.storage.config import (
    BridgeAdapterConfig,
    KvStoreConfig,
    RedisAdapterConfig,
)

StateAdapter = KvStoreConfig | RedisAdapterConfig | BridgeAdapterConfig

STATE_ADAPTERS = (
    Choice("kv", KvStoreConfig, ("modules::state::adapters::KvStore",), ("kv",)),
    Choice("redis", RedisAdapterConfig, ("modules::state::adapters::RedisAdapter",), ("redis",)),
    Choice("bridge", BridgeAdapterConfig, ("modules::state::adapters::Bridge",)),
)


@attrs.frozen(kw_only=True)
class StateConfig:
    """StateModule (§4.1)."""

    adapter: StateAdapter = attrs.field(
        factory=KvStoreConfig, metadata=choice_of(STATE_ADAPTERS, "state adapter")
    )


CHOICE = Choice("state", StateConfig, ("modules::state::StateModule",), ("iii-state",))
