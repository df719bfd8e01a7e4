"""The ``update`` operations of ``state::update`` and ``stream::update`` (spec/modules.md §4.4,
§5.2): declared strictly, applied purely.

Each op is an input class of its own (:data:`Op`, tagged by ``type``), structured by
:mod:`iii_trio.runtime.calls.inputs` as part of the ``state::update`` / ``stream::update``
input, so a malformed op is that call's ``deserialization_error``. :func:`apply_ops`
computes the new value from the old one without touching any store, so every store applies
a call's ops atomically in its own way.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, ClassVar

import attrs

from iii_trio.runtime.calls import inputs

log = logging.getLogger("iii_trio.state")

#: The message for an ``ops`` field that is absent or not a list.
OPS_NOT_A_LIST = "'ops' must be a list of operations"
_PATH = "op 'path' must be a string"
_PATH_OR_LIST = "op 'path' must be a string or a list of strings"


@attrs.frozen(kw_only=True)
class SetOp:
    """Sets the top-level field ``path``; an empty or absent path replaces the value."""

    type: ClassVar[str] = "set"
    value: Any = inputs.field(missing="'set' needs a 'value'")
    path: str | None = inputs.field(default=None, wrong=_PATH)


@attrs.frozen(kw_only=True)
class MergeOp:
    """Shallow merge into the value (``path`` absent, null, ``""`` or ``[]``), or into the
    object at ``path``: a string names one top-level key (``"a.b"`` is the key ``a.b``), a
    list the keys on the way down. Missing or non-object objects on the way are replaced by
    ``{}``, as in the reference engine."""

    type: ClassVar[str] = "merge"
    value: dict[str, Any] = inputs.field(
        missing="'merge' needs a 'value'",
        wrong="'merge' needs an object 'value'",
        null_is_absent=False,
    )
    path: str | list[str] | None = inputs.field(default=None, wrong=_PATH_OR_LIST)


@attrs.frozen(kw_only=True)
class IncrementOp:
    """Integer add; ``value`` is an accepted alias of ``by``."""

    type: ClassVar[str] = "increment"
    by: int = inputs.field(
        fallback_key="value",
        missing="'increment' needs an integer 'by'",
        wrong="'increment' needs an integer 'by'",
    )
    path: str | None = inputs.field(default=None, wrong=_PATH)


@attrs.frozen(kw_only=True)
class DecrementOp:
    """Integer subtract; ``value`` is an accepted alias of ``by``."""

    type: ClassVar[str] = "decrement"
    by: int = inputs.field(
        fallback_key="value",
        missing="'decrement' needs an integer 'by'",
        wrong="'decrement' needs an integer 'by'",
    )
    path: str | None = inputs.field(default=None, wrong=_PATH)


@attrs.frozen(kw_only=True)
class RemoveOp:
    """Removes the top-level field ``path``."""

    type: ClassVar[str] = "remove"
    path: str = inputs.field(missing="'remove' needs a 'path'", wrong=_PATH, blank_is_missing=True)


@attrs.frozen(kw_only=True)
class AppendOp:
    """Pushes onto a list, or concatenates strings, at ``path`` (or onto the value)."""

    type: ClassVar[str] = "append"
    value: Any = inputs.field(missing="'append' needs a 'value'")
    path: str | list[str] | None = inputs.field(default=None, wrong=_PATH_OR_LIST)


Op = SetOp | MergeOp | IncrementOp | DecrementOp | RemoveOp | AppendOp
OP_TYPES: dict[str, type[Op]] = {
    cls.type: cls for cls in (SetOp, MergeOp, IncrementOp, DecrementOp, RemoveOp, AppendOp)
}
inputs.register_tagged_union(
    Op,
    tag="type",
    classes=OP_TYPES,
    not_object="each op must be an object",
    unknown=f"unknown op type {{value!r}} (known: {', '.join(OP_TYPES)})",
)


def _nested(root: dict[str, Any], path: list[str]) -> dict[str, Any]:
    """The object at ``path`` under ``root``, created (or replaced) as objects on the way."""
    node = root
    for part in path:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    return node


def apply_ops(old: Any, ops: list[Op]) -> Any:
    """The value after ``ops``; a missing key (``old`` None) starts from ``{}``."""
    value = {} if old is None else copy.deepcopy(old)
    for op in ops:
        if isinstance(op, SetOp) and not op.path:
            value = copy.deepcopy(op.value)
            continue
        if isinstance(op, AppendOp) and not op.path:  # onto the value itself
            holder = {"": value}
            _append(holder, op)
            value = holder[""]
            continue
        if not isinstance(value, dict):
            log.warning("state::update: %s needs an object value; op skipped", op.type)
            continue
        if isinstance(op, SetOp):
            assert isinstance(op.path, str)
            value[op.path] = copy.deepcopy(op.value)
        elif isinstance(op, MergeOp):
            target = _nested(value, _merge_path(op.path))
            target.update(copy.deepcopy(op.value))
        elif isinstance(op, IncrementOp | DecrementOp):
            assert isinstance(op.path, str)
            current = value.get(op.path)
            increment = isinstance(op, IncrementOp)
            delta = op.by if increment else -op.by
            if isinstance(current, int) and not isinstance(current, bool):
                value[op.path] = current + delta
            elif increment or op.path not in value:
                value[op.path] = delta  # missing (or, for increment, non-integer): `by`
            else:
                value[op.path] = 0  # decrement of a non-integer field
        elif isinstance(op, RemoveOp):
            value.pop(op.path, None)
        else:
            _append(value, op)
    return value


def _merge_path(path: str | list[str] | None) -> list[str]:
    """The keys a merge descends: none for the root (no path, ``""`` or ``[]``)."""
    if isinstance(path, list):
        return path
    return [path] if path else []


def _append(value: dict[str, Any], op: AppendOp) -> None:
    if isinstance(op.path, list):
        *parents, key = op.path or [""]
        holder = _nested(value, parents)
    else:
        holder, key = value, op.path or ""
    current = holder.get(key)
    item = copy.deepcopy(op.value)
    if isinstance(current, list):
        current.append(item)
    elif isinstance(current, str) and isinstance(item, str):
        holder[key] = current + item
    elif current is None:
        holder[key] = [item]  # a missing field starts a list (unverified in the spec)
    else:
        log.warning("state::update: append to a %s field; op skipped", type(current).__name__)
