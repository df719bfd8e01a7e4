"""What one connected worker has registered and told about itself: its session record.

The connection actor (:mod:`.connection`) owns the socket and the calls in flight; the
session holds the registration state — the functions and trigger types it provides, the
services it declared, the metadata of ``engine::workers::register``, its latest reported
metrics — and changes only through its own methods, called by the dispatcher (frames), the
built-ins (``engine::workers::register``) and the observability module (metrics).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from iii_trio.runtime.clock import now_ms
from iii_trio.runtime.wire import protocol


class Session:
    def __init__(self, peer: str) -> None:
        self.worker_id = str(uuid.uuid4())
        self.reattach_token = secrets.token_urlsafe(24)  # 192 bits from the OS CSPRNG
        self.peer = peer
        self.connected_at_ms = now_ms()
        self._functions: set[str] = set()
        self._types: set[str] = set()
        self._triggers: set[str] = set()  # ids of its bindings, for its quota
        self.quota_warned: set[str] = set()  # refusals already logged (quotas.warn_once)
        self._services: dict[str, protocol.RegisterService] = {}
        self._metadata: dict[str, Any] = {}
        self._latest_metrics: dict[str, Any] | None = None
        self._listed = False

    # --- what it provides ----------------------------------------------------------------

    @property
    def functions(self) -> frozenset[str]:
        return frozenset(self._functions)

    @property
    def trigger_types(self) -> frozenset[str]:
        return frozenset(self._types)

    def holds(self, kind: str, item_id: str) -> tuple[int, bool]:
        """(how many ``kind`` it holds, whether ``item_id`` is one): ``function``,
        ``trigger_type`` or ``trigger`` (binding ids), for its quotas."""
        held = {"function": self._functions, "trigger_type": self._types}.get(kind, self._triggers)
        return len(held), item_id in held

    def bound(self, trigger_id: str) -> None:
        self._triggers.add(trigger_id)

    def unbound(self, trigger_id: str) -> None:
        self._triggers.discard(trigger_id)

    def provide_function(self, function_id: str) -> None:
        self._functions.add(function_id)
        self._listed = True

    def withdraw_function(self, function_id: str) -> None:
        self._functions.discard(function_id)

    def provide_trigger_type(self, type_id: str) -> None:
        self._types.add(type_id)
        self._listed = True

    def withdraw_trigger_type(self, type_id: str) -> bool:
        """False when it did not provide ``type_id``."""
        if type_id not in self._types:
            return False
        self._types.discard(type_id)
        return True

    def declare_service(self, service: protocol.RegisterService) -> None:
        self._services[service.id] = service

    def take_registrations(self) -> tuple[Iterable[str], Iterable[str]]:
        """Empty the session (it disconnected): the functions and trigger types it
        provided, for the registry to remove."""
        functions, types = sorted(self._functions), sorted(self._types)
        self._functions.clear()
        self._types.clear()
        return functions, types

    # --- what it told about itself -----------------------------------------------------------

    @property
    def listed(self) -> bool:
        """Whether it appears in ``engine::workers::list`` (spec §3.8): once it registered
        something or called ``engine::workers::register``."""
        return self._listed

    def mark_listed(self) -> None:
        self._listed = True

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        """``engine::workers::register``: the worker's name, runtime, version, ..."""
        self._metadata = dict(metadata)
        self._listed = True

    @property
    def latest_metrics(self) -> Mapping[str, Any] | None:
        return self._latest_metrics

    def record_metrics(self, values: Mapping[str, Any], *, at_ms: int, limit: int) -> None:
        """Merge its latest metric values: at most ``limit`` names (values of names it
        already has are always updated), stamped ``timestamp: at_ms``."""
        current = self._latest_metrics
        if current is None:
            current = self._latest_metrics = {}
        for name, value in values.items():
            if name in current or len(current) < limit:
                current[name] = value
        current["timestamp"] = at_ms

    def row(self, active_invocations: int) -> dict[str, Any]:
        """Its row of ``engine::workers::list`` (spec §3.8, §5.3)."""
        meta = self._metadata
        pid = meta.get("pid")
        return {
            "id": self.worker_id,
            "name": _str_or_none(meta.get("name")),
            "runtime": _str_or_none(meta.get("runtime")),
            "version": _str_or_none(meta.get("version")),
            "os": _str_or_none(meta.get("os")),
            "ip_address": self.peer,
            "status": "connected",
            "connected_at_ms": self.connected_at_ms,
            "function_count": len(self._functions),
            "functions": sorted(self._functions),
            "active_invocations": active_invocations,
            "latest_metrics": self._latest_metrics,
            "pid": pid if isinstance(pid, int) else None,
        }


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
