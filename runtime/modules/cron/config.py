"""Settings of the CronModule (spec/modules.md §8.1)."""

from __future__ import annotations

import attrs

from iii_trio.runtime.config.schema import POSITIVE, Choice, choice_of
from iii_trio.runtime.modules.storage.config import RedisAdapterConfig


@attrs.frozen(kw_only=True)
class KvCronConfig:
    """Cron KvCronAdapter (§8.1): in-process lock."""

    lock_ttl_ms: int = attrs.field(default=30000, metadata=POSITIVE)
    lock_index: str = "cron_locks"


CronAdapter = KvCronConfig | RedisAdapterConfig

CRON_ADAPTERS = (
    Choice("kv", KvCronConfig, ("modules::cron::KvCronAdapter",)),
    Choice("redis", RedisAdapterConfig, ("modules::cron::RedisCronAdapter",), ("redis",)),
)


@attrs.frozen(kw_only=True)
class CronConfig:
    """CronModule (§8.1)."""

    adapter: CronAdapter = attrs.field(
        factory=KvCronConfig, metadata=choice_of(CRON_ADAPTERS, "cron adapter")
    )


CHOICE = Choice("cron", CronConfig, ("modules::cron::CronModule",), ("iii-cron",))
