"""``engine::baggage::get`` / ``set`` / ``get_all`` (spec/modules.md §9.3).

They read the W3C ``baggage`` header of the invocation that calls them: the ``baggage``
field of the caller's ``invokefunction`` frame, which the SDKs fill from their current
context (iii-sdk 0.25.0 and the trio SDK pass the baggage of the invocation they are
serving on to the calls they make). An engine function cannot change its caller's
context, so ``set`` changes nothing: it answers ``{success, note}`` and, as a
convenience, ``baggage``: the header with the entry set, for the caller to send on.

Parsing follows the W3C Baggage format: ``key=value`` members separated by commas,
properties after ``;`` dropped, values percent-decoded; at most :data:`MAX_MEMBERS`
members and :data:`MAX_BYTES` bytes of header are read (the limits OpenTelemetry uses).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, unquote

from iii_trio.runtime.calls import inputs
from iii_trio.runtime.calls.errors import deserialization_error
from iii_trio.runtime.calls.invocation import CallContext
from iii_trio.runtime.modules.observability.inputs import BaggageEntry, BaggageKey, NoInput

MAX_MEMBERS = 180
MAX_BYTES = 8192
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 7230 token: a valid key
NOTE = (
    "baggage is read from the calling invocation and cannot be changed for it by an "
    "engine function; send the returned `baggage` header with your next calls"
)


def parse(header: str | None) -> dict[str, str]:
    if not header:
        return {}
    items: dict[str, str] = {}
    for member in header[:MAX_BYTES].split(","):
        key, sep, value = member.split(";", 1)[0].partition("=")
        key = key.strip()
        if not sep or not _TOKEN.match(key):
            continue
        items[key] = unquote(value.strip())
        if len(items) >= MAX_MEMBERS:
            break
    return items


def render(items: dict[str, str]) -> str:
    return ",".join(f"{key}={quote(value, safe='')}" for key, value in items.items())


async def get(data: Any, ctx: CallContext) -> dict[str, Any]:
    key = inputs.structure("engine::baggage::get", data, BaggageKey).key
    return {"value": parse(ctx.baggage).get(key)}


async def set_(data: Any, ctx: CallContext) -> dict[str, Any]:
    fid = "engine::baggage::set"
    entry = inputs.structure(fid, data, BaggageEntry)
    if not _TOKEN.match(entry.key):  # after both fields are checked, as before
        raise deserialization_error(fid, "`key` must be a W3C baggage key (an HTTP token)")
    items = parse(ctx.baggage)
    items[entry.key] = entry.value
    return {"success": True, "note": NOTE, "baggage": render(items)}


async def get_all(data: Any, ctx: CallContext) -> dict[str, Any]:
    inputs.structure("engine::baggage::get_all", data, NoInput)
    return {"baggage": parse(ctx.baggage)}
