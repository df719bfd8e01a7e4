"""Alert rules (spec/modules.md §9.4): evaluated every :data:`EVALUATION_INTERVAL_S` seconds
and on ``engine::alerts::evaluate``; ``engine::alerts::list`` shows their state.

The value a rule compares with its threshold, over its ``window_seconds`` (at most
:data:`MAX_WINDOW_SECONDS`; longer windows are cut to it with a startup warning):

- ``iii.invocations.total|success|error|deferred``, ``iii.workers.spawns|deaths``: the
  number of those events in the last ``window_seconds`` (whole seconds on the observer's
  clock, the current second included), e.g. ``iii.invocations.error`` = invocations that
  failed in the window. Not the counters since start.
- ``iii.invocation.duration``: the mean duration in ms of invocations finished in the
  window (no invocation: no value).
- ``iii.workers.active``, ``iii.invocations.in_flight``: the current value (no window).
- any other name: the newest ``MTRC`` data point of that name reported in the window (a
  histogram's point: its count); none: no value.

A rule without a value is not firing and takes no action. A firing rule acts when it
has never acted or its last action is at least ``cooldown_seconds`` old, so a lasting
condition repeats its action once per cooldown. Actions: ``log`` (a warning on the
console and a WARN record in the log store, so ``log`` triggers see it), ``webhook``
(POST ``{alert, metric, value, threshold, operator, timestamp}``; a refused or failed POST
is retried after 1, 2 and 4 s, then given up and counted) and ``function`` (called with the
same object plus ``firing``: ``true`` when it fires, ``false`` once when it stops firing).
Actions run in the background, at most :data:`ACTIONS_IN_FLIGHT` at once; beyond that an
action is skipped and counted in ``actions_dropped``. Disabled rules are listed, never
evaluated.
"""

from __future__ import annotations

import logging
import operator
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import trio

from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.modules.observability.http_client import REQUEST_ERRORS, Target, post_json
from iii_trio.runtime.modules.observability.inputs import LogEntry

if TYPE_CHECKING:
    from iii_trio.runtime.modules.observability.config import AlertRule
    from iii_trio.runtime.modules.observability.observer import EngineObserver

log = logging.getLogger("iii_trio.otel.alerts")

EVALUATION_INTERVAL_S = 10.0
MAX_WINDOW_SECONDS = 3600
WEBHOOK_RETRY_DELAYS_S = (1.0, 2.0, 4.0)
WEBHOOK_TIMEOUT_S = 10.0
ACTIONS_IN_FLIGHT = 16
CALLER = "observability"

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
COUNTED = frozenset(
    {
        "iii.invocations.total",
        "iii.invocations.success",
        "iii.invocations.error",
        "iii.invocations.deferred",
        "iii.workers.spawns",
        "iii.workers.deaths",
    }
)
DURATION = "iii.invocation.duration"
_DURATION_SUM, _DURATION_COUNT = "duration.sum", "duration.count"


class Windows:
    """Per-second event counts for the last ``seconds`` seconds (the rules' windows)."""

    def __init__(self, seconds: int) -> None:
        self.buckets: deque[tuple[int, dict[str, float]]] = deque(maxlen=seconds + 1)

    def add(self, name: str, now_s: int, value: float = 1.0) -> None:
        buckets = self.buckets
        if not buckets or buckets[-1][0] < now_s:
            buckets.append((now_s, {}))
        counts = buckets[-1][1]
        counts[name] = counts.get(name, 0.0) + value

    def duration(self, duration_ms: float, now_s: int) -> None:
        self.add(_DURATION_SUM, now_s, duration_ms)
        self.add(_DURATION_COUNT, now_s)

    def total(self, name: str, now_s: int, window_s: int) -> float:
        since = now_s - window_s
        return sum(counts.get(name, 0.0) for second, counts in self.buckets if second > since)

    def mean_duration(self, now_s: int, window_s: int) -> float | None:
        count = self.total(_DURATION_COUNT, now_s, window_s)
        return self.total(_DURATION_SUM, now_s, window_s) / count if count else None


def window_of(rule: AlertRule) -> int:
    return min(rule.window_seconds, MAX_WINDOW_SECONDS)


class AlertManager:
    def __init__(self, observer: EngineObserver, rules: tuple[AlertRule, ...]) -> None:
        self.observer = observer
        self.rules = rules
        self.states: dict[str, dict[str, Any]] = {rule.name: _state(rule) for rule in rules}
        self.evaluations = 0
        self.actions_in_flight = 0
        self.actions_dropped = 0
        self.webhooks = {"sent": 0, "retries": 0, "failed": 0}
        self.function_calls = {"ok": 0, "failed": 0}
        self._nursery: trio.Nursery | None = None
        for rule in rules:
            if rule.window_seconds > MAX_WINDOW_SECONDS:
                log.warning(
                    "alert %s: window_seconds %d is cut to %d",
                    rule.name,
                    rule.window_seconds,
                    MAX_WINDOW_SECONDS,
                )

    @property
    def window_seconds(self) -> int:
        """The longest window an enabled rule needs (0: no per-second counts kept)."""
        return max((window_of(r) for r in self.rules if r.enabled), default=0)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                while True:
                    await trio.sleep(EVALUATION_INTERVAL_S)
                    self.evaluate()
            finally:
                self._nursery = None

    # --- evaluation ---------------------------------------------------------------------------

    def evaluate(self) -> list[dict[str, Any]]:
        """Evaluate every enabled rule now; the events of the rules that acted."""
        self.evaluations += 1
        now_ns = self.observer.clock()
        now_ms = now_ns // 1_000_000
        events = []
        for rule in self.rules:
            if not rule.enabled:
                continue
            state = self.states[rule.name]
            value = self.value(rule, now_ns)
            firing = value is not None and OPERATORS[rule.operator](value, rule.threshold)
            was_firing = state["firing"]
            state.update(firing=firing, value=value, last_evaluated=now_ms)
            event = {
                "alert": rule.name,
                "metric": rule.metric,
                "value": value,
                "threshold": float(rule.threshold),
                "operator": rule.operator,
                "timestamp": now_ms,
            }
            last = state["last_triggered"]
            if firing and (last is None or now_ms - last >= rule.cooldown_seconds * 1000):
                state["last_triggered"] = now_ms
                state["trigger_count"] += 1
                events.append(event)
                self._act(rule, event, firing=True)
            elif was_firing and not firing:
                self._act(rule, event, firing=False)
        return events

    def value(self, rule: AlertRule, now_ns: int) -> float | None:
        observer = self.observer
        name, window = rule.metric, window_of(rule)
        now_s = now_ns // 1_000_000_000
        windows = observer.windows
        if name in COUNTED:
            return windows.total(name, now_s, window) if windows is not None else 0.0
        if name == DURATION:
            return windows.mean_duration(now_s, window) if windows is not None else None
        if name == "iii.workers.active":
            return float(observer.ctx.engine_gauges().workers_connected)
        if name == "iii.invocations.in_flight":
            return float(observer.ctx.engine_gauges().invocations_in_flight)
        since = now_ns - window * 1_000_000_000
        for point in reversed(observer.sdk_metrics.items):
            if point["timestamp_unix_nano"] < since:
                continue
            if point["name"] == name:
                value = point["value"]
                if isinstance(value, dict):
                    value = value.get("count")
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return float(value)
        return None

    # --- actions ------------------------------------------------------------------------------

    def _act(self, rule: AlertRule, event: dict[str, Any], *, firing: bool) -> None:
        action = rule.action
        if action.type == "log":
            self._log(event, firing=firing)
            return
        if action.type == "webhook" and not firing:
            return  # the webhook body has no `firing`: it is told about firing only
        nursery = self._nursery
        if nursery is None or self.actions_in_flight >= ACTIONS_IN_FLIGHT:
            self.actions_dropped += 1
            log.warning("alert %s: %s action skipped (too many in flight)", rule.name, action.type)
            return
        self.actions_in_flight += 1
        if action.type == "webhook":
            assert action.url is not None  # checked when the config was loaded
            nursery.start_soon(self._webhook, rule.name, action.url, event)
        else:
            assert action.path is not None
            nursery.start_soon(self._call, rule.name, action.path, {**event, "firing": firing})

    def _log(self, event: dict[str, Any], *, firing: bool) -> None:
        verb = "firing" if firing else "resolved"
        message = (
            f"alert {event['alert']} {verb}: {event['metric']} = {event['value']} "
            f"({event['operator']} {event['threshold']})"
        )
        (log.warning if firing else log.info)("%s", message)
        severity = "warn" if firing else "info"
        self.observer.engine_log(severity, LogEntry(message=message, data=event))

    async def _webhook(self, name: str, url: str, event: dict[str, Any]) -> None:
        try:
            target = Target.parse(url)
            body = orjson.dumps(event)
            reason = ""
            for attempt, delay in enumerate((0.0, *WEBHOOK_RETRY_DELAYS_S)):
                if delay:
                    self.webhooks["retries"] += 1
                    await trio.sleep(delay)
                try:
                    with trio.fail_after(WEBHOOK_TIMEOUT_S):
                        status = await post_json(target, target.path, body)
                except REQUEST_ERRORS as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                else:
                    if 200 <= status < 300:
                        self.webhooks["sent"] += 1
                        return
                    reason = f"HTTP {status}"
                log.info("alert %s: webhook attempt %d failed: %s", name, attempt + 1, reason)
            self.webhooks["failed"] += 1
            log.warning("alert %s: webhook %s given up: %s", name, url, reason)
        except ValueError as exc:
            self.webhooks["failed"] += 1
            log.warning("alert %s: webhook %s", name, exc)
        finally:
            self.actions_in_flight -= 1

    async def _call(self, name: str, function_id: str, payload: dict[str, Any]) -> None:
        try:
            await self.observer.ctx.call(function_id, payload, caller=CALLER)
        except InvocationError as exc:
            self.function_calls["failed"] += 1
            log.warning("alert %s: function %s failed: %s", name, function_id, exc)
        else:
            self.function_calls["ok"] += 1
        finally:
            self.actions_in_flight -= 1

    # --- engine::alerts::list -----------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        return [dict(self.states[rule.name]) for rule in self.rules]

    def firing_count(self) -> int:
        return sum(1 for state in self.states.values() if state["firing"])

    def stats(self) -> dict[str, Any]:
        return {
            "rules": len(self.rules),
            "firing": self.firing_count(),
            "evaluations": self.evaluations,
            "actions_in_flight": self.actions_in_flight,
            "actions_dropped": self.actions_dropped,
            "webhooks": dict(self.webhooks),
            "function_calls": dict(self.function_calls),
        }


def _state(rule: AlertRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "metric": rule.metric,
        "operator": rule.operator,
        "threshold": float(rule.threshold),
        "window_seconds": window_of(rule),
        "cooldown_seconds": rule.cooldown_seconds,
        "enabled": rule.enabled,
        "action": rule.action.type,
        "firing": False,
        "value": None,
        "last_evaluated": None,
        "last_triggered": None,
        "trigger_count": 0,
    }
