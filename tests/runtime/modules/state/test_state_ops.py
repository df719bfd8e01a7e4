"""``state::update`` operations on their own (spec/modules.md §4.4)."""

from __future__ import annotations

from typing import Any

import pytest

from iii_trio.runtime.calls import inputs
from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.modules.state.inputs import StateUpdate
from iii_trio.runtime.modules.storage.kv.ops import Op, apply_ops


def parse_ops(raw_ops: Any) -> list[Op]:
    """The ops of a ``state::update`` input, structured as the function does."""
    raw = {"scope": "s", "key": "k", "ops": raw_ops}
    return inputs.structure("state::update", raw, StateUpdate).ops


def update(old: Any, *ops: dict[str, Any]) -> Any:
    return apply_ops(old, parse_ops(list(ops)))


@pytest.mark.parametrize(
    ("old", "ops", "new"),
    [
        (None, [{"type": "set", "path": "a", "value": 1}], {"a": 1}),
        ({"a": 1}, [{"type": "set", "path": "", "value": [1]}], [1]),
        ({"a.b": 0}, [{"type": "set", "path": "a.b", "value": 2}], {"a.b": 2}),
        ({"a": 1}, [{"type": "merge", "path": None, "value": {"b": 2}}], {"a": 1, "b": 2}),
        ({}, [{"type": "merge", "path": ["x", "y"], "value": {"z": 1}}], {"x": {"y": {"z": 1}}}),
        # A string path names one top-level key (issue 16, item 15: it merged at the root).
        ({"a": 1}, [{"type": "merge", "path": "s", "value": {"b": 2}}], {"a": 1, "s": {"b": 2}}),
        (
            {"s": {"x": 1}},
            [{"type": "merge", "path": "s", "value": {"b": 2}}],
            {"s": {"x": 1, "b": 2}},
        ),
        ({"s": 3}, [{"type": "merge", "path": "s", "value": {"b": 2}}], {"s": {"b": 2}}),
        ({"a.b": {}}, [{"type": "merge", "path": "a.b", "value": {"c": 1}}], {"a.b": {"c": 1}}),
        ({"a": 1}, [{"type": "merge", "path": "", "value": {"b": 2}}], {"a": 1, "b": 2}),
        ({"a": 1}, [{"type": "merge", "path": [], "value": {"b": 2}}], {"a": 1, "b": 2}),
        ({"n": 1}, [{"type": "increment", "path": "n", "by": 2}], {"n": 3}),
        ({}, [{"type": "increment", "path": "n", "by": 2}], {"n": 2}),
        ({"n": "x"}, [{"type": "increment", "path": "n", "by": 2}], {"n": 2}),
        ({"n": 1}, [{"type": "increment", "path": "n", "value": 5}], {"n": 6}),
        ({"n": 5}, [{"type": "decrement", "path": "n", "by": 2}], {"n": 3}),
        ({}, [{"type": "decrement", "path": "n", "by": 2}], {"n": -2}),
        ({"n": "x"}, [{"type": "decrement", "path": "n", "by": 2}], {"n": 0}),
        ({"a": 1, "b": 2}, [{"type": "remove", "path": "a"}], {"b": 2}),
        ({"l": [1]}, [{"type": "append", "path": "l", "value": 2}], {"l": [1, 2]}),
        ({"s": "ab"}, [{"type": "append", "path": "s", "value": "c"}], {"s": "abc"}),
        ({}, [{"type": "append", "path": ["a", "b"], "value": 1}], {"a": {"b": [1]}}),
        ([1], [{"type": "append", "value": 2}], [1, 2]),
        # Ops that need an object leave a non-object value alone (with a warning).
        (5, [{"type": "increment", "path": "n", "by": 1}], 5),
        # All ops of one call, in order.
        (
            None,
            [
                {"type": "set", "path": "n", "value": 1},
                {"type": "increment", "path": "n", "by": 1},
                {"type": "set", "path": "done", "value": True},
            ],
            {"n": 2, "done": True},
        ),
    ],
)
def test_operation_semantics(old: Any, ops: list[dict[str, Any]], new: Any) -> None:
    assert update(old, *ops) == new


def test_the_old_value_is_never_modified() -> None:
    old = {"l": [1], "n": {"deep": 1}}
    update(old, {"type": "append", "path": "l", "value": 2}, {"type": "remove", "path": "n"})
    assert old == {"l": [1], "n": {"deep": 1}}


@pytest.mark.parametrize(
    ("ops", "detail"),
    [
        ("nope", "'ops' must be a list"),
        ([1], "each op must be an object"),
        ([{"type": "multiply", "path": "n"}], "unknown op type 'multiply'"),
        ([{"type": "increment", "path": "n", "by": 1.5}], "needs an integer 'by'"),
        ([{"type": "increment", "path": "n"}], "needs an integer 'by'"),
        ([{"type": "increment", "path": "n", "by": True}], "needs an integer 'by'"),
        ([{"type": "set", "path": "n"}], "'set' needs a 'value'"),
        ([{"type": "merge", "path": None, "value": 3}], "'merge' needs an object 'value'"),
        ([{"type": "remove"}], "'remove' needs a 'path'"),
        ([{"type": "set", "path": 3, "value": 1}], "op 'path' must be a string"),
    ],
)
def test_bad_operations_are_deserialization_errors(ops: Any, detail: str) -> None:
    with pytest.raises(InvocationError) as info:
        parse_ops(ops)
    assert info.value.code == "deserialization_error"
    assert info.value.message.startswith("Failed to deserialize input for state::update: ")
    assert detail in info.value.message
