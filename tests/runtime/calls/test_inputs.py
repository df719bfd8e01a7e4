"""The input facility on its own (runtime/calls/inputs.py): declared attrs classes in, the
one-line ``deserialization_error`` out (spec/modules.md §2.1)."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import pytest

from iii_trio.runtime.calls import inputs
from iii_trio.runtime.calls.errors import InvocationError, TriggerConfigError

FID = "test::function"


def refusal(data: Any, cls: type[Any]) -> tuple[str, str]:
    """(code, message) of the error ``data`` is refused with."""
    with pytest.raises(InvocationError) as info:
        inputs.structure(FID, data, cls)
    return info.value.code, info.value.message


def detail(data: Any, cls: type[Any]) -> str:
    """The detail of the ``deserialization_error`` ``data`` is refused with."""
    code, message = refusal(data, cls)
    assert code == "deserialization_error"
    prefix = f"Failed to deserialize input for {FID}: "
    assert message.startswith(prefix)
    return message[len(prefix) :]


@attrs.frozen(kw_only=True)
class Scalars:
    text: str = "t"
    count: int = 0
    flag: bool = False
    number: float = 0.0


# --- types ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"text": 1}, "`text` must be a string"),
        ({"text": ["a"]}, "`text` must be a string"),
        ({"count": True}, "`count` must be an integer"),  # a bool is not an int
        ({"count": 1.0}, "`count` must be an integer"),
        ({"count": "1"}, "`count` must be an integer"),
        ({"flag": 1}, "`flag` must be a boolean"),
        ({"flag": "true"}, "`flag` must be a boolean"),
        ({"number": False}, "`number` must be a number"),
        ({"number": "1.5"}, "`number` must be a number"),
    ],
)
def test_types_are_strict(data: dict[str, Any], message: str) -> None:
    assert detail(data, Scalars) == message


def test_well_typed_values_come_through_and_an_integer_is_a_number() -> None:
    data = {"text": "x", "count": 3, "flag": True, "number": 2}
    assert inputs.structure(FID, data, Scalars) == Scalars(text="x", count=3, flag=True, number=2)
    assert inputs.structure(FID, {"number": 2.5}, Scalars).number == 2.5


@attrs.frozen(kw_only=True)
class Containers:
    tags: list[str] = attrs.field(factory=list)
    path: str | list[str] | None = None
    extra: dict[str, Any] | None = None
    anything: Any = None


def test_lists_objects_and_unions() -> None:
    data = {"tags": ["a"], "path": ["x", "y"], "extra": {"k": 1}, "anything": [1, None]}
    assert inputs.structure(FID, data, Containers) == Containers(
        tags=["a"], path=["x", "y"], extra={"k": 1}, anything=[1, None]
    )
    assert inputs.structure(FID, {"path": "x"}, Containers).path == "x"
    assert detail({"tags": "a"}, Containers) == "`tags` must be a list"
    assert detail({"tags": ["a", 1]}, Containers) == "`tags` must be a list"
    assert detail({"path": 3}, Containers) == "`path` must be a string or a list"
    assert detail({"path": ["x", 3]}, Containers) == "`path` must be a string or a list"
    assert detail({"extra": []}, Containers) == "`extra` must be an object"


# --- absent, null, blank ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Required:
    name: str
    payload: Any
    note: str | None = None
    tags: list[str] = attrs.field(factory=list)


def test_an_absent_or_null_required_field_is_missing() -> None:
    assert detail({"payload": 1}, Required) == "missing field `name`"
    assert detail({"name": None, "payload": 1}, Required) == "missing field `name`"
    assert detail({"name": "n"}, Required) == "missing field `payload`"


def test_null_is_a_value_where_the_type_admits_it() -> None:
    structured = inputs.structure(FID, {"name": "n", "payload": None, "note": None}, Required)
    assert (structured.payload, structured.note) == (None, None)


def test_null_for_a_field_with_a_default_is_the_default() -> None:
    first = inputs.structure(FID, {"name": "n", "payload": 1, "tags": None}, Required)
    second = inputs.structure(FID, {"name": "n", "payload": 1, "tags": None}, Required)
    assert first.tags == []
    assert first.tags is not second.tags  # a fresh one each time
    assert inputs.structure(FID, {"count": None}, Scalars).count == 0


@attrs.frozen(kw_only=True)
class Strict:
    value: dict[str, Any] = inputs.field(
        missing="needs a value", wrong="needs an object value", null_is_absent=False
    )
    topic: str = inputs.field(default="default", blank_is_missing=True)


def test_null_can_be_a_wrong_value_and_blank_can_be_absent() -> None:
    assert detail({}, Strict) == "needs a value"
    assert detail({"value": None}, Strict) == "needs an object value"
    assert inputs.structure(FID, {"value": {}, "topic": ""}, Strict).topic == "default"
    assert inputs.structure(FID, {"value": {}, "topic": "t"}, Strict).topic == "t"


# --- keys ---------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Keys:
    caller: Any = inputs.field(default=None, key="_caller_worker_id")
    value: Any = inputs.field(fallback_key="data")


def test_keys_renames_fallbacks_and_unknown_keys() -> None:
    assert inputs.structure(FID, {"_caller_worker_id": "w", "value": 1}, Keys) == Keys(
        caller="w", value=1
    )
    assert inputs.structure(FID, {"data": 2}, Keys).value == 2  # the alias
    assert inputs.structure(FID, {"value": 1, "data": 2}, Keys).value == 1  # the key wins
    assert inputs.structure(FID, {"value": None, "data": 2}, Keys).value is None
    assert detail({"caller": "w"}, Keys) == "missing field `value`"  # named by its key
    assert inputs.structure(FID, {"value": 1, "unknown": 2}, Keys).value == 1


# --- order --------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Base:
    first: str


@attrs.frozen(kw_only=True)
class Ordered(Base):
    second: int = 0
    third: str
    fourth: bool = False


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"first": 1, "second": "x", "third": 3}, "`first` must be a string"),
        ({"second": "x", "fourth": 1}, "missing field `first`"),  # base fields first
        ({"first": "f", "second": "x"}, "`second` must be an integer"),  # not the missing third
        ({"first": "f", "fourth": 1}, "missing field `third`"),  # before the later fourth
        ({"first": "f", "third": "t", "fourth": 1}, "`fourth` must be a boolean"),
    ],
)
def test_the_first_failing_field_in_declaration_order_names_the_error(
    data: dict[str, Any], message: str
) -> None:
    assert detail(data, Ordered) == message


# --- checks -------------------------------------------------------------------------------------


_NON_NEGATIVE = "`{key}` must be a non-negative integer"


@attrs.frozen(kw_only=True)
class Checked:
    level: int = inputs.field(
        default=0,
        wrong=_NON_NEGATIVE,
        checks=[(lambda n: n >= 0, _NON_NEGATIVE), (lambda n: n < 3, "`level` is 0, 1 or 2")],
    )
    name: str = inputs.field(
        default="all", checks=[(lambda s: s in ("all", "one"), "got {value!r} for {key}")]
    )


def test_checks_run_in_order_after_the_type() -> None:
    assert detail({"level": True}, Checked) == "`level` must be a non-negative integer"
    assert detail({"level": -1}, Checked) == "`level` must be a non-negative integer"
    assert detail({"level": 3}, Checked) == "`level` is 0, 1 or 2"
    assert detail({"name": "two"}, Checked) == "got 'two' for name"
    assert inputs.structure(FID, {"level": 2, "name": "one"}, Checked) == Checked(
        level=2, name="one"
    )


def test_a_check_that_raises_is_an_engine_bug_not_an_input_error() -> None:
    @attrs.frozen(kw_only=True)
    class Buggy:
        value: int = inputs.field(checks=[(lambda n: 1 // n > 0, "unused")])

    with pytest.raises(ZeroDivisionError):
        inputs.structure(FID, {"value": 0}, Buggy)


# --- non-objects and the class's rules -----------------------------------------------------------


@attrs.frozen(kw_only=True)
class OrNull:
    RULES: ClassVar[inputs.Rules] = inputs.Rules(accepts="object_or_null")
    flag: bool = False


@attrs.frozen(kw_only=True)
class Anything:
    RULES: ClassVar[inputs.Rules] = inputs.Rules(
        accepts="anything", wrong="'{key}' must be {expected}"
    )
    flag: bool = False


@attrs.frozen(kw_only=True)
class Worded:
    RULES: ClassVar[inputs.Rules] = inputs.Rules(
        not_object="config must be an object",
        missing="needs '{key}'",
        wrong="'{key}' must be {expected}, got {value!r}",
    )
    topic: str


@pytest.mark.parametrize("data", [None, [], "x", 3, True])
def test_a_non_object_is_refused_by_default(data: Any) -> None:
    assert detail(data, Scalars) == "expected an object"


def test_what_a_class_accepts_instead_of_an_object() -> None:
    assert inputs.structure(FID, None, OrNull) == OrNull()
    assert detail([], OrNull) == "expected an object"
    for data in (None, [], "x", 3):
        assert inputs.structure(FID, data, Anything) == Anything()
    assert detail({"flag": 1}, Anything) == "'flag' must be a boolean"


def test_a_class_words_its_own_messages() -> None:
    assert detail("x", Worded) == "config must be an object"
    assert detail({}, Worded) == "needs 'topic'"
    assert detail({"topic": 5}, Worded) == "'topic' must be a string, got 5"


# --- refusals with their own code, trigger configs ---------------------------------------------


@attrs.frozen(kw_only=True)
class Topic:
    topic: str = inputs.field(
        missing=inputs.Refusal("topic_not_set", "Topic is not set"), blank_is_missing=True
    )


def test_a_refusal_carries_its_own_code_and_message() -> None:
    assert refusal({}, Topic) == ("topic_not_set", "Topic is not set")
    assert refusal({"topic": ""}, Topic) == ("topic_not_set", "Topic is not set")
    assert detail({"topic": 1}, Topic) == "`topic` must be a string"


def test_a_trigger_config_is_refused_with_the_bare_detail() -> None:
    with pytest.raises(TriggerConfigError, match=r"^config must be an object$"):
        inputs.structure_config(None, Worded)
    with pytest.raises(TriggerConfigError, match=r"^Topic is not set$"):
        inputs.structure_config({}, Topic)
    assert inputs.structure_config({"topic": "t"}, Worded) == Worded(topic="t")


# --- nested classes and tagged unions ----------------------------------------------------------


@attrs.frozen(kw_only=True)
class Point:
    RULES: ClassVar[inputs.Rules] = inputs.Rules(not_object="each point must be an object")
    x: int
    y: int = 0


@attrs.frozen(kw_only=True)
class Shape:
    origin: Point
    points: list[Point] = attrs.field(factory=list)


def test_nested_classes_and_lists_of_them() -> None:
    data = {"origin": {"x": 1}, "points": [{"x": 2, "y": 3}]}
    assert inputs.structure(FID, data, Shape) == Shape(origin=Point(x=1), points=[Point(x=2, y=3)])
    assert detail({}, Shape) == "missing field `origin`"
    assert detail({"origin": 3}, Shape) == "each point must be an object"
    assert detail({"origin": {"y": 1}}, Shape) == "missing field `x`"
    assert detail({"origin": {"x": 1}, "points": [{"x": 1}, 7]}, Shape) == (
        "each point must be an object"
    )
    assert detail({"origin": {"x": 1}, "points": [{"x": "1"}]}, Shape) == "`x` must be an integer"


@attrs.frozen(kw_only=True)
class Add:
    by: int = inputs.field(
        fallback_key="value", missing="'add' needs 'by'", wrong="'add' needs 'by'"
    )


@attrs.frozen(kw_only=True)
class Clear:
    pass


Step = Add | Clear
inputs.register_tagged_union(
    Step,
    tag="type",
    classes={"add": Add, "clear": Clear},
    not_object="each step must be an object",
    unknown="unknown step {value!r}",
)


@attrs.frozen(kw_only=True)
class Program:
    steps: list[Step] = inputs.field(missing="'steps' is a list", wrong="'steps' is a list")


def test_a_tagged_union_picks_its_class_by_the_tag() -> None:
    data = {"steps": [{"type": "add", "value": 2}, {"type": "clear", "by": 9}]}
    assert inputs.structure(FID, data, Program) == Program(steps=[Add(by=2), Clear()])
    assert detail({"steps": {}}, Program) == "'steps' is a list"
    assert detail({"steps": [None]}, Program) == "each step must be an object"
    assert detail({"steps": [{}]}, Program) == "unknown step None"
    assert detail({"steps": [{"type": ["add"]}]}, Program) == "unknown step ['add']"
    assert detail({"steps": [{"type": "add", "by": True}]}, Program) == "'add' needs 'by'"


def test_a_type_without_a_json_reading_is_refused_when_first_used() -> None:
    @attrs.frozen(kw_only=True)
    class Unreadable:
        pairs: dict[str, int]

    with pytest.raises(TypeError, match="no JSON reading"):
        inputs.structure(FID, {"pairs": {}}, Unreadable)
