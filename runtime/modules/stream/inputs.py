"""The inputs of ``stream::*`` (spec/modules.md §5.2) and the ``stream`` trigger's config
(§5.5), declared for :mod:`iii_trio.runtime.calls.inputs`."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from iii_trio.runtime.calls import inputs
from iii_trio.runtime.modules.storage.kv.ops import OPS_NOT_A_LIST, Op


@attrs.frozen(kw_only=True)
class NoInput:
    """``stream::list_all``: any object."""


@attrs.frozen(kw_only=True)
class StreamName:
    """``stream::list_groups``."""

    stream_name: str


@attrs.frozen(kw_only=True)
class StreamGroup(StreamName):
    """``stream::list``."""

    group_id: str


@attrs.frozen(kw_only=True)
class StreamItem(StreamGroup):
    """``stream::get``, ``stream::delete``."""

    item_id: str


@attrs.frozen(kw_only=True)
class StreamWrite(StreamItem):
    """``stream::set``: ``data`` must be sent; ``null`` is a value."""

    data: Any


@attrs.frozen(kw_only=True)
class StreamUpdate(StreamItem):
    """``stream::update`` (no ``operations`` alias here, unlike ``state::update``)."""

    ops: list[Op] = inputs.field(missing=OPS_NOT_A_LIST, wrong=OPS_NOT_A_LIST)


@attrs.frozen(kw_only=True)
class StreamEvent(StreamGroup):
    """``stream::send``: a custom event ``{type, data}`` for a group (or one item ``id``)."""

    event_type: str = inputs.field(key="type")
    item_id: str | None = inputs.field(
        default=None, key="id", wrong="`{key}` must be a string or null"
    )
    data: Any


@attrs.frozen(kw_only=True)
class StreamTriggerConfig:
    """A ``stream`` binding: ``{stream_name, group_id?, item_id?, condition_function_id?}``."""

    RULES: ClassVar[inputs.Rules] = inputs.Rules(
        not_object="stream trigger config must be an object",
        wrong="stream trigger '{key}' must be a string",
    )
    stream_name: str = inputs.field(
        missing="stream trigger needs a non-empty string 'stream_name'",
        wrong="stream trigger needs a non-empty string 'stream_name'",
        blank_is_missing=True,
    )
    group_id: str | None = None
    item_id: str | None = None
    condition_function_id: str | None = None
