"""The inputs of the built-in functions (:mod:`.module`), declared for
:mod:`iii_trio.runtime.calls.inputs`.

The listings take any input (a non-object reads as ``{}``); the built-ins quote a key as
``'key'`` in their messages."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from iii_trio.runtime.calls import inputs

_ANY_INPUT = inputs.Rules(accepts="anything", wrong="'{key}' must be {expected}")


@attrs.frozen(kw_only=True)
class Listing:
    """``engine::functions::list``, ``engine::triggers::list``."""

    RULES: ClassVar[inputs.Rules] = _ANY_INPUT
    include_internal: bool = False


@attrs.frozen(kw_only=True)
class WorkerQuery:
    """``engine::workers::list``: ``worker_id`` is compared as sent (any value)."""

    RULES: ClassVar[inputs.Rules] = _ANY_INPUT
    worker_id: Any = None


@attrs.frozen(kw_only=True)
class ChannelRequest:
    """``engine::channels::create``."""

    RULES: ClassVar[inputs.Rules] = _ANY_INPUT
    buffer_size: int | None = None


@attrs.frozen(kw_only=True)
class WorkerRegistration:
    """``engine::workers::register``: an object of metadata; the engine adds the caller."""

    caller_worker_id: Any = inputs.field(default=None, key="_caller_worker_id")


@attrs.frozen(kw_only=True)
class InvocationQuery:
    """``engine::invocations::get``."""

    invocation_id: str = inputs.field(
        key="id", missing="missing field 'id'", wrong="missing field 'id'"
    )
