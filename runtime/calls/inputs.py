"""Engine-function inputs: declared as attrs classes, structured by one cattrs converter.

An engine function states the input it takes as a frozen attrs class, and the first line of
its handler turns the raw JSON value into it::

    @attrs.frozen(kw_only=True)
    class StateKey:
        scope: str
        key: str

    key = inputs.structure("state::get", data, StateKey)

Whatever the class refuses becomes the spec's one-line error (modules.md §2.1), code
``deserialization_error``, message ``Failed to deserialize input for state::get: missing
field `scope```. Trigger types check a binding's config the same way with
:func:`structure_config`, which raises :class:`TriggerConfigError` with the bare detail.

The rules, the same for every function:

- Types are strict, as JSON has them: ``str``, ``int``, ``bool``, ``float`` (an integer is a
  number, a bool is neither), ``dict[str, Any]`` (an object), ``list[X]``, unions of these,
  ``Any`` (anything, null included), nested input classes and tagged unions of them
  (:func:`register_tagged_union`).
- ``null`` counts as an absent key (the field's default, or "missing") unless the field's
  type admits it (``X | None``, ``Any``); ``field(null_is_absent=False)`` makes it a wrong
  value instead. ``field(blank_is_missing=True)`` does the same for ``""``.
- Unknown keys are ignored (the injected ``_caller_worker_id`` among them).
- Fields are checked in declaration order (base classes first); the first that fails names
  the error, so one input with two faults is refused for the same fault as before.
- A non-object input is refused unless the class's ``RULES`` read it as ``{}``
  (:class:`Rules`: ``accepts="object_or_null"`` or ``"anything"``).

Messages come from the class's :class:`Rules` (by default "missing field `{key}`" and
"`{key}` must be {expected}") or from the field (:func:`field`: ``missing=``, ``wrong=``,
``checks=``). A message is a template over ``{key}`` (the JSON key), ``{expected}`` (the
type's wording: "a string"; for ``X | None`` that of ``X``) and ``{value}`` (what was sent;
``{value!r}`` for its repr), so a literal brace cannot appear in one. A message may instead
be a :class:`Refusal`: an error with a code of its own (``topic_not_set``).

Cost, measured by ``bench/inputs.py`` (CPython 3.11, best of 7 x 100,000 on a shared
2-core machine): ``state::get``'s input structures in 0.68 µs against 0.2 µs for the
hand-written check it replaced, ``engine::functions::list``'s in 0.6 µs against 0.12 µs;
about 0.5 µs more per call, where the engine spends 88-233 µs of CPU on an in-memory state
call (docs/performance.md), so within the noise of the call benchmarks. Nothing is
interpreted per call: each class's structure function is generated once by cattrs (its
``make_dict_structure_fn``, detailed validation on, so failures list in field order) over
one small hook per field, and kept in :data:`_hooks` (the converter's own dispatch costs
about 1 µs a call, more than the structuring).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import attrs
import cattrs
from cattrs.errors import ClassValidationError
from cattrs.gen import make_dict_structure_fn, override

from iii_trio.runtime.calls.errors import (
    InvocationError,
    TriggerConfigError,
    deserialization_error,
)

T = TypeVar("T")


@attrs.frozen
class Refusal:
    """A refusal with an error code of its own instead of ``deserialization_error``; its
    message is sent as it is (no ``Failed to deserialize input for ...`` around it)."""

    code: str
    message: str


#: A detail template (see the module docstring), or a refusal with its own code.
Message = str | Refusal
#: A value check after the type check: the predicate, and the message when it fails.
Check = tuple[Callable[[Any], bool], Message]


@attrs.frozen
class Rules:
    """How one input class reads a non-object and words its default messages. Set it as
    the class attribute ``RULES: ClassVar[Rules]`` (subclasses inherit it).

    ``accepts``: ``"object"`` refuses anything but an object with ``not_object``;
    ``"object_or_null"`` reads ``null`` as ``{}``; ``"anything"`` reads every non-object
    as ``{}`` (the listing built-ins, which take any input)."""

    accepts: Literal["object", "object_or_null", "anything"] = "object"
    not_object: str = "expected an object"
    missing: Message = "missing field `{key}`"
    wrong: Message = "`{key}` must be {expected}"


DEFAULT_RULES = Rules()


@attrs.frozen
class _FieldRules:
    key: str | None = None
    fallback_key: str | None = None
    missing: Message | None = None
    wrong: Message | None = None
    null_is_absent: bool = True
    blank_is_missing: bool = False
    checks: tuple[Check, ...] = ()


_DEFAULT_FIELD = _FieldRules()
_METADATA_KEY = "iii_trio.inputs"


def field(
    *,
    default: Any = attrs.NOTHING,
    factory: Callable[[], Any] | None = None,
    key: str | None = None,
    fallback_key: str | None = None,
    missing: Message | None = None,
    wrong: Message | None = None,
    null_is_absent: bool = True,
    blank_is_missing: bool = False,
    checks: Sequence[Check] = (),
) -> Any:
    """An input field (keyword-only) with rules of its own.

    ``key``: the JSON key when it is not the attribute's name (``_caller_worker_id``).
    ``fallback_key``: a second key read when ``key`` is absent (an accepted alias; the
    main key wins when both are sent). ``missing`` / ``wrong``: the messages for an absent
    and an ill-typed value (the class's :class:`Rules` otherwise). ``null_is_absent``:
    whether ``null`` counts as absent (the default) or as a wrong value, for types that do
    not admit it. ``blank_is_missing``: ``""`` counts as absent. ``checks``: value checks
    run, in order, after the type check."""
    rules = _FieldRules(
        key, fallback_key, missing, wrong, null_is_absent, blank_is_missing, tuple(checks)
    )
    metadata = {_METADATA_KEY: rules}
    if factory is not None:
        return attrs.field(factory=factory, kw_only=True, metadata=metadata)
    return attrs.field(default=default, kw_only=True, metadata=metadata)


# --- refusing ---------------------------------------------------------------------------------


class _Refused(Exception):
    """Raised inside the converter's hooks with the final message; never leaves this file."""

    def __init__(self, message: Message) -> None:
        super().__init__(message)
        self.message = message

    def for_function(self, function_id: str) -> InvocationError:
        if isinstance(self.message, Refusal):
            return InvocationError(self.message.code, self.message.message)
        return deserialization_error(function_id, self.message)

    def for_config(self) -> TriggerConfigError:
        message = self.message
        return TriggerConfigError(message.message if isinstance(message, Refusal) else message)


class _Wrong(Exception):
    """A value is not of the declared JSON type (turned into the field's message)."""


def _render(template: Message, key: str, expected: str, value: Any) -> Message:
    if isinstance(template, Refusal):
        return template
    return template.format(key=key, expected=expected, value=value)


# --- the converter ----------------------------------------------------------------------------

converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
_tagged_unions: dict[Any, Callable[[Any, Any], Any]] = {}

_EXACT_LABELS: dict[type[Any], str] = {str: "a string", int: "an integer", bool: "a boolean"}


# Each class's hook, looked up here rather than through the converter's dispatch.
_hooks: dict[type[Any], Callable[[Any, Any], Any]] = {}


def _hook(cls: type[Any]) -> Callable[[Any, Any], Any]:
    hook = _hooks.get(cls)
    if hook is None:
        hook = _hooks[cls] = converter.get_structure_hook(cls)
    return hook


def structure(function_id: str, data: Any, cls: type[T]) -> T:
    """``data`` as an instance of the input class ``cls``, or the ``InvocationError`` the
    function answers with (``deserialization_error`` unless a :class:`Refusal` says)."""
    try:
        result: T = _hook(cls)(data, cls)
    except _Refused as refused:
        raise refused.for_function(function_id) from None
    return result


def structure_config(config: Any, cls: type[T]) -> T:
    """A binding's ``config`` as ``cls``, or :class:`TriggerConfigError` with the detail."""
    try:
        result: T = _hook(cls)(config, cls)
    except _Refused as refused:
        raise refused.for_config() from None
    return result


def register_tagged_union(
    union: Any, *, tag: str, classes: Mapping[str, type[Any]], not_object: str, unknown: str
) -> None:
    """Structure ``union`` (``A | B | ...``) by the string under ``tag``: ``classes[tag]``.
    A non-object is refused with ``not_object``, any other tag with ``unknown`` (a
    template over ``{value}``, the tag sent)."""
    hooks = {name: converter.get_structure_hook(cls) for name, cls in classes.items()}

    def structure_member(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise _Refused(not_object)
        name = value.get(tag)
        if not isinstance(name, str) or name not in hooks:
            raise _Refused(unknown.format(value=name))
        return hooks[name](value, classes[name])

    _tagged_unions[union] = structure_member
    converter.register_structure_hook_func(lambda t: t == union, structure_member)


def _class_hook(cls: type[Any]) -> Callable[[Any, Any], Any]:
    """The structure hook of one input class, made once: the object check, the fallback
    keys, then cattrs' generated function over one hook per field."""
    attrs.resolve_types(cls)
    rules: Rules = getattr(cls, "RULES", DEFAULT_RULES)
    overrides: dict[str, Any] = {}
    fallbacks: list[tuple[str, str]] = []
    missing: dict[str, Message] = {}
    for attribute in attrs.fields(cls):
        field_rules = attribute.metadata.get(_METADATA_KEY, _DEFAULT_FIELD)
        key = field_rules.key or attribute.name
        hook, missing[attribute.name] = _field_hook(attribute, key, field_rules, rules)
        rename = key if key != attribute.name else None
        overrides[attribute.name] = override(rename=rename, struct_hook=hook)
        if field_rules.fallback_key is not None:
            fallbacks.append((key, field_rules.fallback_key))
    generated = make_dict_structure_fn(
        cls, converter, _cattrs_detailed_validation=True, **overrides
    )
    accepts, not_object = rules.accepts, rules.not_object

    def structure_class(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            if accepts == "anything" or (value is None and accepts == "object_or_null"):
                value = {}
            else:
                raise _Refused(not_object)
        for key, fallback in fallbacks:
            if key not in value and fallback in value:
                value = {**value, key: value[fallback]}
        try:
            return generated(value, cls)
        except ClassValidationError as exc:
            raise _first_refusal(exc, missing) from None

    return structure_class


converter.register_structure_hook_factory(attrs.has, _class_hook)


def _first_refusal(exc: ClassValidationError, missing: Mapping[str, Message]) -> _Refused:
    """The refusal of the first field that failed (cattrs lists them in field order)."""
    first = exc.exceptions[0]
    if isinstance(first, _Refused):
        return first
    if isinstance(first, KeyError):  # a required key the input lacks
        note: Any = first.__notes__[-1]  # cattrs' note names the attribute being structured
        return _Refused(missing[note.name])
    raise first  # not an input fault: an engine bug, answered as any handler's crash


def _field_hook(
    attribute: attrs.Attribute[Any], key: str, field_rules: _FieldRules, rules: Rules
) -> tuple[Callable[[Any, Any], Any], Message]:
    """One field's hook (null, blank, type, checks) and its missing-key message."""
    convert, expected, admits_null = _converter_for(attribute.type)
    missing_template = field_rules.missing or rules.missing
    wrong_template = field_rules.wrong or rules.wrong
    missing = _render(missing_template, key, expected, None)
    default: Any = attribute.default
    required = default is attrs.NOTHING
    null_is_absent, blank_is_missing = field_rules.null_is_absent, field_rules.blank_is_missing
    checks = field_rules.checks

    def absent() -> Any:
        if required:
            raise _Refused(missing)
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            return default.factory()
        return default

    def structure_field(value: Any, _: Any) -> Any:
        if value is None:
            if admits_null:
                return None
            if null_is_absent:
                return absent()
            raise _Refused(_render(wrong_template, key, expected, value))
        if blank_is_missing and value == "":
            return absent()
        try:
            result = convert(value)
        except _Wrong:
            raise _Refused(_render(wrong_template, key, expected, value)) from None
        for predicate, message in checks:
            if not predicate(result):
                raise _Refused(_render(message, key, expected, value))
        return result

    exact = attribute.type if attribute.type in _EXACT_LABELS else None
    if exact is None or checks or blank_is_missing:
        return structure_field, missing

    def structure_exact(value: Any, _: Any) -> Any:  # the common case, without a call
        if type(value) is exact:
            return value
        return structure_field(value, _)

    return structure_exact, missing


def _converter_for(tp: Any) -> tuple[Callable[[Any], Any], str, bool]:
    """(convert, the type's wording, whether null is a value) for a declared type;
    ``convert`` returns the value or raises :class:`_Wrong`."""
    if tp is Any or tp is object:
        return _same, "any value", True
    if tp in _EXACT_LABELS:

        def exact(value: Any) -> Any:
            if type(value) is tp:
                return value
            raise _Wrong

        return exact, _EXACT_LABELS[tp], False
    if tp is float:
        return _number, "a number", False
    if tp in _tagged_unions or attrs.has(tp):
        hook = _tagged_unions.get(tp) or converter.get_structure_hook(tp)
        return (lambda value: hook(value, tp)), "an object", False
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is dict or (origin is dict and args[1] is Any):
        return _object, "an object", False
    if tp is list or origin is list:
        return _list_of(args[0] if args else Any), "a list", False
    if origin is types.UnionType or origin is typing.Union:
        return _union_of(args)
    raise TypeError(f"inputs: no JSON reading of the type {tp!r}")


def _same(value: Any) -> Any:
    return value


def _number(value: Any) -> Any:
    if type(value) is float or type(value) is int:
        return value
    raise _Wrong


def _object(value: Any) -> Any:
    if isinstance(value, dict):
        return value
    raise _Wrong


def _list_of(item_type: Any) -> Callable[[Any], Any]:
    convert_item, _, _ = _converter_for(item_type)

    def convert_list(value: Any) -> Any:
        if not isinstance(value, list):
            raise _Wrong
        if convert_item is _same:
            return value
        return [convert_item(item) for item in value]

    return convert_list


def _union_of(members: tuple[Any, ...]) -> tuple[Callable[[Any], Any], str, bool]:
    admits_null = type(None) in members
    options = [_converter_for(member) for member in members if member is not type(None)]
    expected = " or ".join(label for _, label, _ in options)
    if len(options) == 1:
        return options[0][0], expected, admits_null or options[0][2]
    converts = [convert for convert, _, _ in options]

    def convert_union(value: Any) -> Any:
        for convert in converts:
            try:
                return convert(value)
            except _Wrong:
                continue
        raise _Wrong

    return convert_union, expected, admits_null or any(null for _, _, null in options)
