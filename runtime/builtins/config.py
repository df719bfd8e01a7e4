"""Settings of the kinds the engine handles itself: ``worker`` and ``telemetry``.

Listing either in a config changes nothing: the WorkerModule is always loaded and the
TelemetryModule (the reference's usage reporting) is a no-op here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import attrs

from iii_trio.runtime.config.schema import Choice


@attrs.frozen(kw_only=True)
class WorkerConfig:
    """WorkerModule: always loaded; listing it is allowed and takes no config."""


@attrs.frozen(kw_only=True)
class TelemetryConfig:
    """TelemetryModule: a no-op. The reference's keys are accepted silently."""

    ACCEPTED: ClassVar[Mapping[str, str | None]] = dict.fromkeys(
        ("enabled", "sdk_api_key", "heartbeat_interval_secs")
    )


WORKER = Choice("worker", WorkerConfig, ("modules::worker::WorkerModule",))
TELEMETRY = Choice("telemetry", TelemetryConfig, ("modules::telemetry::TelemetryModule",))
