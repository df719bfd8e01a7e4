"""The ``update`` operations of ``state::update`` and ``stream::update`` (spec/modules.md §4.4,
§5.2): parsed strictly, applied purely.

:func:`parse_ops` turns the wire list into :class:`Op` values or raises a
``deserialization_error``; :func:`apply_ops` computes the new value from the old one without
touching any store, so every store applies a call's ops atomically in its own way.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import attrs

from iii_trio.runtime.calls.errors import deserialization_error

log = logging.getLogger("iii_trio.state")

OP_TYPES = ("set", "merge", "increment", "decrement", "remove", "append")


@attrs.frozen
class Op:
    type: str
    path: str | list[str] | None
    value: Any = None
    by: int = 1


def _path(function_id: str, raw: dict[str, Any], *, allow_list: bool) -> str | list[str] | None:
    path = raw.get("path")
    if path is None or isinstance(path, str):
        return path
    if allow_list and isinstance(path, list) and all(isinstance(p, str) for p in path):
        return path
    expected = "a string or a list of strings" if allow_list else "a string"
    raise deserialization_error(function_id, f"op 'path' must be {expected}")


def parse_ops(function_id: str, raw_ops: Any) -> list[Op]:
    if not isinstance(raw_ops, list):
        raise deserialization_error(function_id, "'ops' must be a list of operations")
    ops = []
    for raw in raw_ops:
        if not isinstance(raw, dict):
            raise deserialization_error(function_id, "each op must be an object")
        kind = raw.get("type")
        if kind not in OP_TYPES:
            known = ", ".join(OP_TYPES)
            raise deserialization_error(function_id, f"unknown op type {kind!r} (known: {known})")
        if kind in ("increment", "decrement"):
            by = raw.get("by", raw.get("value"))  # `value` is an accepted alias of `by`
            if not isinstance(by, int) or isinstance(by, bool):
                raise deserialization_error(function_id, f"'{kind}' needs an integer 'by'")
            ops.append(Op(kind, _path(function_id, raw, allow_list=False), by=by))
        elif kind in ("set", "merge", "append"):
            if "value" not in raw:
                raise deserialization_error(function_id, f"'{kind}' needs a 'value'")
            allow_list = kind in ("merge", "append")
            value = raw["value"]
            if kind == "merge" and not isinstance(value, dict):
                raise deserialization_error(function_id, "'merge' needs an object 'value'")
            ops.append(Op(kind, _path(function_id, raw, allow_list=allow_list), value=value))
        else:  # remove
            path = _path(function_id, raw, allow_list=False)
            if not path:
                raise deserialization_error(function_id, "'remove' needs a 'path'")
            ops.append(Op(kind, path))
    return ops


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
        if op.type == "set" and not op.path:
            value = copy.deepcopy(op.value)
            continue
        if op.type == "append" and not op.path:  # onto the value itself
            holder = {"": value}
            _append(holder, op)
            value = holder[""]
            continue
        if not isinstance(value, dict):
            log.warning("state::update: %s needs an object value; op skipped", op.type)
            continue
        if op.type == "set":
            assert isinstance(op.path, str)
            value[op.path] = copy.deepcopy(op.value)
        elif op.type == "merge":
            target = _nested(value, op.path) if isinstance(op.path, list) else value
            target.update(copy.deepcopy(op.value))
        elif op.type in ("increment", "decrement"):
            assert isinstance(op.path, str)
            current = value.get(op.path)
            delta = op.by if op.type == "increment" else -op.by
            if isinstance(current, int) and not isinstance(current, bool):
                value[op.path] = current + delta
            elif op.type == "increment" or op.path not in value:
                value[op.path] = delta  # missing (or, for increment, non-integer): `by`
            else:
                value[op.path] = 0  # decrement of a non-integer field
        elif op.type == "remove":
            assert isinstance(op.path, str)
            value.pop(op.path, None)
        else:  # append
            _append(value, op)
    return value


def _append(value: dict[str, Any], op: Op) -> None:
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
