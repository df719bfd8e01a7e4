"""OtelModule (``modules::observability::OtelModule``, ``iii-observability``; spec/modules.md §9).

While it runs enabled, the module installs its :class:`EngineObserver` as
``router.observer``: the router reports every invocation to it (one span and the duration
metrics each), the RestApiModule, QueueModule and CronModule open spans for requests, jobs
and runs, and worker telemetry frames (``OTLP`` / ``LOGS`` / ``MTRC``, D1) are ingested.
Logs, spans and worker metrics are kept in bounded rings (stores.py); ``GET /metrics`` is
served on the RestApiModule's port; OTLP/HTTP export runs when ``endpoint`` is set.

Also: the ``log`` trigger type (log_trigger.py), alert rules (alerts.py), rollups
(rollups.py), ``engine::baggage::*`` (baggage.py) and the engine's own log level and format
(engine_logging.py).

Not in this build: gRPC export (OTLP/HTTP JSON only), links from a queue job's span to the
trace that enqueued it, and an SSRF guard on alert webhooks (their URLs come from the
operator's config file).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import trio

from iii_trio.runtime.calls.invocation import LocalHandler
from iii_trio.runtime.clock import now_ms
from iii_trio.runtime.modules.base import EngineModule
from iii_trio.runtime.modules.observability import baggage, prometheus
from iii_trio.runtime.modules.observability.alerts import (
    EVALUATION_INTERVAL_S,
    AlertManager,
    Windows,
)
from iii_trio.runtime.modules.observability.config import OtelConfig
from iii_trio.runtime.modules.observability.engine_logging import engine_log_output
from iii_trio.runtime.modules.observability.export import OtlpExporter
from iii_trio.runtime.modules.observability.log_trigger import LogTrigger
from iii_trio.runtime.modules.observability.observer import SEVERITIES, EngineObserver, Settings
from iii_trio.runtime.modules.observability.queries import Queries

if TYPE_CHECKING:
    from iii_trio.runtime.calls.registry import EngineTriggerType
    from iii_trio.runtime.config.loading import ModuleEntry
    from iii_trio.runtime.modules.context import HttpEndpoint, ModuleContext

log = logging.getLogger("iii_trio.otel")

METRICS_PATH = "/metrics"


def create(ctx: ModuleContext, entry: ModuleEntry) -> OtelModule:
    assert isinstance(entry.config, OtelConfig)
    return OtelModule(ctx, entry.config)


class OtelModule(EngineModule):
    def __init__(self, ctx: ModuleContext, config: OtelConfig) -> None:
        super().__init__(ctx)
        self.config = config
        self.settings = Settings.from_config(config)
        self.observer = EngineObserver(ctx, self.settings)
        self.alerts = AlertManager(self.observer, config.alerts)
        self.queries = Queries(self.observer, self.alerts)
        self.log_trigger = LogTrigger(ctx)

    def functions(self) -> dict[str, tuple[LocalHandler, str]]:
        if not self.settings.enabled:
            return {"engine::health::check": (self._disabled_health, "Observability health")}
        q = self.queries
        functions: dict[str, tuple[LocalHandler, str]] = {
            f"engine::log::{severity}": (q.log_function(severity), f"Store a {severity} log")
            for severity in SEVERITIES
        }
        functions.update(
            {
                "engine::logs::list": (q.logs_list, "Stored logs, newest first"),
                "engine::logs::clear": (q.logs_clear, "Remove the stored logs"),
                "engine::traces::list": (q.traces_list, "Stored root spans"),
                "engine::traces::tree": (q.traces_tree, "One trace's spans as a tree"),
                "engine::traces::clear": (q.traces_clear, "Remove the stored spans"),
                "engine::metrics::list": (q.metrics_list, "Engine and worker metrics"),
                "engine::health::check": (q.health_check, "Observability health"),
                "engine::sampling::rules": (q.sampling_rules, "Trace and log sampling"),
                "engine::alerts::list": (q.alerts_list, "Alert rules and their state"),
                "engine::alerts::evaluate": (q.alerts_evaluate, "Evaluate the alert rules now"),
                "engine::rollups::list": (q.rollups_list, "Pre-aggregated metric rollups"),
                "engine::baggage::get": (baggage.get, "A baggage entry of the calling invocation"),
                "engine::baggage::set": (baggage.set_, "The caller's baggage with an entry set"),
                "engine::baggage::get_all": (baggage.get_all, "The calling invocation's baggage"),
            }
        )
        return functions

    def trigger_types(self) -> list[EngineTriggerType]:
        return [self.log_trigger] if self.settings.enabled else []

    def http_endpoints(self) -> Mapping[str, HttpEndpoint]:
        return {METRICS_PATH: self._prometheus} if self.settings.enabled else {}

    def introspect(self) -> dict[str, Any]:
        observer = self.observer
        return {
            "enabled": self.settings.enabled,
            "log_trigger": self.log_trigger.stats(),
            "alerts": self.alerts.stats(),
            "rollups": observer.rollups.stats(),
            "logs": observer.logs.stats(),
            "spans": observer.spans.stats(),
            "metrics": observer.sdk_metrics.stats(),
            "telemetry_frames": observer.telemetry_frames,
            "telemetry_rejected": observer.telemetry_rejected,
        }

    async def serve(self, task_status: trio.TaskStatus[Any]) -> None:
        with engine_log_output(self.config.level, self.config.format):
            await self._serve(task_status)

    async def _serve(self, task_status: trio.TaskStatus[Any]) -> None:
        if not self.settings.enabled:
            log.info("observability disabled: telemetry frames are discarded")
            if self.config.alerts:
                log.warning(
                    "observability disabled: its %d alert rules are not evaluated",
                    len(self.config.alerts),
                )
            task_status.started()
            await trio.sleep_forever()
        exporter = self._exporter()
        self.observer.exporter = exporter
        self.observer.log_sink = self.log_trigger.offer
        window = self.alerts.window_seconds
        self.observer.windows = Windows(window) if window else None
        try:
            with self.ctx.observing(self.observer):
                await self._run_enabled(exporter, task_status)
        finally:
            self.observer.log_sink = None

    async def _run_enabled(
        self, exporter: OtlpExporter | None, task_status: trio.TaskStatus[Any]
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.log_trigger.run)
            if self.alerts.rules:
                enabled = sum(rule.enabled for rule in self.alerts.rules)
                log.info(
                    "observability: %d alert rules (%d enabled), evaluated every %g s",
                    len(self.alerts.rules),
                    enabled,
                    EVALUATION_INTERVAL_S,
                )
                nursery.start_soon(self.alerts.run)
            if exporter is not None:
                nursery.start_soon(exporter.run)
            task_status.started()
            await trio.sleep_forever()

    def _exporter(self) -> OtlpExporter | None:
        settings, config = self.settings, self.config
        wanted = settings.spans_to_otlp or settings.logs_to_otlp or settings.metrics_to_otlp
        if config.endpoint is None:
            if config.exporter in ("otlp", "both"):
                log.warning(
                    "observability: exporter %s without an endpoint: spans are not exported "
                    "and, with 'otlp', not kept in memory either",
                    config.exporter,
                )
            return None
        if not wanted:
            return None
        return OtlpExporter(
            self.observer,
            config.endpoint,
            batch_size=config.logs_batch_size,
            flush_interval_s=config.logs_flush_interval_ms / 1000,
            metrics=settings.metrics_to_otlp,
        )

    async def _prometheus(self) -> tuple[int, list[tuple[str, str]], bytes]:
        return 200, [("content-type", prometheus.CONTENT_TYPE)], prometheus.render(self.observer)

    async def _disabled_health(self, data: Any, ctx: Any) -> dict[str, Any]:
        disabled = {"status": "disabled", "details": {}}
        return {
            "status": "healthy",
            "components": {name: disabled for name in ("otel", "metrics", "logs", "spans")},
            "timestamp": now_ms(),
            "version": "",
        }
