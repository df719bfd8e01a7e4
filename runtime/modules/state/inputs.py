"""The inputs of ``state::*`` (spec/modules.md §4.3) and the ``state`` trigger's config
(§4.5), declared for :mod:`iii_trio.runtime.calls.inputs`."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from iii_trio.runtime.calls import inputs
from iii_trio.runtime.modules.storage.kv.ops import OPS_NOT_A_LIST, Op


@attrs.frozen(kw_only=True)
class StateScope:
    """``state::list``."""

    scope: str


@attrs.frozen(kw_only=True)
class StateKey(StateScope):
    """``state::get``, ``state::delete``."""

    key: str


@attrs.frozen(kw_only=True)
class StateWrite(StateKey):
    """``state::set``: ``data`` is an accepted alias of ``value``; ``null`` is a value."""

    value: Any = inputs.field(fallback_key="data")


@attrs.frozen(kw_only=True)
class StateUpdate(StateKey):
    """``state::update``: ``operations`` is an accepted alias of ``ops``."""

    ops: list[Op] = inputs.field(
        fallback_key="operations", missing=OPS_NOT_A_LIST, wrong=OPS_NOT_A_LIST
    )


@attrs.frozen(kw_only=True)
class StateTriggerConfig:
    """A ``state`` binding: ``{scope?, key?, condition_function_id?}``; no config is ``{}``."""

    RULES: ClassVar[inputs.Rules] = inputs.Rules(
        accepts="object_or_null",
        not_object="state trigger config must be an object",
        wrong="state trigger '{key}' must be a string",
    )
    scope: str | None = None
    key: str | None = None
    condition_function_id: str | None = None
