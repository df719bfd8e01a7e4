"""Per-worker quotas: what one worker connection may register and create.

Without them one worker could fill the registry, or every channel slot, for everyone (issue
16 item 10: 10,000 unconnected channels in 1.8 s made every HTTP request answer 503 for five
minutes). Each connection may hold at most

- ``max_functions_per_worker`` functions (re-registering one it has is a replacement, free),
- ``max_triggers_per_worker`` trigger bindings (the same for a repeated trigger id),
- ``max_trigger_types_per_worker`` trigger types,
- ``max_channels_per_worker`` open channels it created with ``engine::channels::create``
  (counted in :mod:`.channels`, which also keeps workers' channels apart from the modules').

A refusal is the error code ``quota_exceeded`` (not in the reference: it has no quotas) with a
message naming the setting. Bindings are refused with a ``triggerregistrationresult``, the
frame the protocol has for a failed binding; channels with the call's error. Functions and
trigger types have no answer frame (spec §2.1, §2.3: the engine never sends
``registrationrejected``), so their refusal is a warning in the engine's log, once per
connection and kind, and the registration does not happen. Checks and counts happen in one
synchronous step of the connection's reader task, so a quota cannot be overshot.
"""

from __future__ import annotations

import logging

import attrs

from iii_trio.runtime.wire import protocol

log = logging.getLogger("iii_trio.quotas")

QUOTA_EXCEEDED = "quota_exceeded"


@attrs.frozen
class WorkerQuotas:
    """The per-connection limits (config keys in the docstring of this module)."""

    functions: int = 10000
    triggers: int = 10000
    trigger_types: int = 1000
    # Channels are counted where they live, in the ChannelTable (.channels).


def quota_error(limit: int, what: str, key: str) -> protocol.ErrorBody:
    return protocol.ErrorBody(
        QUOTA_EXCEEDED, f"a worker connection may hold at most {limit} {what} ({key})"
    )


def function_refusal(quotas: WorkerQuotas, held: int, has_it: bool) -> protocol.ErrorBody | None:
    """A ``registerfunction`` from a connection holding ``held`` functions (``has_it``:
    this id among them, a replacement)."""
    if has_it or held < quotas.functions:
        return None
    return quota_error(quotas.functions, "functions", "max_functions_per_worker")


def trigger_type_refusal(
    quotas: WorkerQuotas, held: int, has_it: bool
) -> protocol.ErrorBody | None:
    if has_it or held < quotas.trigger_types:
        return None
    return quota_error(quotas.trigger_types, "trigger types", "max_trigger_types_per_worker")


def trigger_refusal(quotas: WorkerQuotas, held: int, has_it: bool) -> protocol.ErrorBody | None:
    if has_it or held < quotas.triggers:
        return None
    return quota_error(quotas.triggers, "trigger bindings", "max_triggers_per_worker")


def warn_once(warned: set[str], who: object, error: protocol.ErrorBody, kind: str) -> None:
    """Log a refusal of ``kind`` once per connection (``warned`` is its record)."""
    if kind in warned:
        return
    warned.add(kind)
    log.warning("%s: %s: %s; further ones are refused too", who, error.code, error.message)
