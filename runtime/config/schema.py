"""Declarative config schemas: attrs classes walked by one generic validator.

A schema is an ``@attrs.frozen`` class. Its type hints say what a key accepts (``int``,
``float``, ``str``, ``bool``, ``Literal[...]``, ``X | None``, ``tuple[X, ...]`` for lists,
``Mapping[str, X]`` for mappings, nested schema classes); field metadata adds bounds
(:func:`limits`), per-value warnings (``warn_values``) or a custom ``parse`` hook (used for
``{class|name, config}`` entries, see :class:`Choice`). A class may list keys it accepts
without effect in ``ACCEPTED`` (key -> warning text, or ``None`` to accept silently) and may
define ``check()`` for rules across keys. ``null`` for a section, list or mapping means its
defaults (empty); ``null`` for a scalar is an error unless the type allows ``None``.
:func:`build` walks a parsed YAML value against a schema and raises :class:`ConfigError`
naming the file, the key path and the closest valid name.
"""

from __future__ import annotations

import difflib
import functools
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import attrs

T = TypeVar("T")

#: ``parse`` hook signature: (value as written, key path, context) -> converted value.
Parser = Callable[[object, str, "Context"], object]

#: How a store keeps its data: in this process only, or in a SQLite file.
StoreMethod = Literal["in_memory", "file_based"]

#: The warning for keys listed in a schema's ``ACCEPTED`` that this build ignores.
NO_EFFECT = "accepted for compatibility with other iii versions; it has no effect here"


class ConfigError(Exception):
    """One clear message: ``'<file>: <key path>: <problem>'``.

    Example: ``config.yaml: modules[0].config.cors.allowed_origin: unknown key (did you
    mean 'allowed_origins'?)``. ``key_path`` is a dotted path (``modules[0].config.port``),
    ``"line L, column C"`` when the problem has no key (YAML syntax, a placeholder in a
    comment) or ``""`` for the whole file. The CLI prints ``str(err)`` and exits with code 2.
    """

    file: str
    key_path: str
    problem: str

    def __init__(self, file: str, key_path: str, problem: str, *, standalone: bool = False) -> None:
        self.file = file
        self.key_path = key_path
        self.problem = problem
        if standalone:
            message = problem
        else:
            message = ": ".join(part for part in (file, key_path, problem) if part)
        super().__init__(message)


@attrs.define
class Context:
    """Where values come from (the file name), the module kinds a config may name, and the
    warnings collected while walking."""

    source: str
    module_kinds: Sequence[Choice] = ()
    warnings: list[str] = attrs.Factory(list)

    def error(self, key_path: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key_path, problem)

    def warn(self, key_path: str, message: str) -> None:
        self.warnings.append(f"{self.source}: {key_path}: {message}")


def limits(
    min: float | None = None, max: float | None = None, *, min_items: int | None = None
) -> dict[str, object]:
    """Field metadata: inclusive numeric bounds, or a minimum list length."""
    return {"min": min, "max": max, "min_items": min_items}


PORT = limits(0, 65535)
POSITIVE = limits(1)
NON_NEGATIVE = limits(0)
RATIO = limits(0.0, 1.0)


# -- key paths and suggestions ----------------------------------------------------------------

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def join(path: str, key: str) -> str:
    """``join("modules[0].config", "port")`` -> ``modules[0].config.port``."""
    if not _PLAIN_KEY.fullmatch(key):
        return f"{path}[{key!r}]"
    return f"{path}.{key}" if path else key


def suggest(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or ``""``."""
    pool = list(candidates)
    match = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if not match:
        # `RestApiModule` for `modules::api::RestApiModule`: compare the last segment too.
        tails = {c.rsplit("::", 1)[-1]: c for c in pool}
        tail = difflib.get_close_matches(word.rsplit("::", 1)[-1], list(tails), n=1, cutoff=0.8)
        match = [tails[tail[0]]] if tail else []
    return f" (did you mean '{match[0]}'?)" if match else ""


def describe(value: object) -> str:
    """How a YAML value reads in an error message: ``a string ('abc')``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__} ({value})"


# -- the walker --------------------------------------------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def build(cls: type[T], data: object, path: str, ctx: Context) -> T:
    """Validate ``data`` (a parsed YAML mapping, or ``None`` for all defaults) against ``cls``."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ctx.error(path, f"expected a mapping, got {describe(data)}")
    schema: Any = cls
    fields = {f.name: f for f in attrs.fields(schema)}
    accepted: Mapping[str, str | None] = getattr(schema, "ACCEPTED", {})
    hints = _hints(schema)
    values: dict[str, object] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ctx.error(path, f"keys must be strings, got {describe(key)}")
        key_path = join(path, key)
        if key in fields:
            values[key] = convert(hints[key], value, key_path, ctx, fields[key].metadata)
        elif key in accepted:
            warning = accepted[key]
            if warning:
                ctx.warn(key_path, warning)
        else:
            raise ctx.error(key_path, "unknown key" + suggest(key, [*fields, *accepted]))
    for name, field in fields.items():
        if name not in values and field.default is attrs.NOTHING:
            raise ctx.error(join(path, name), "required key is missing")
    obj = cls(**values)
    check: Callable[[], tuple[str, str] | None] | None = getattr(obj, "check", None)
    problem = check() if check is not None else None
    if problem is not None:
        key, text = problem
        raise ctx.error(join(path, key) if key else path, text)
    return obj


def convert(tp: Any, value: object, path: str, ctx: Context, meta: Mapping[Any, Any]) -> object:
    """Check one value against a type hint; returns the converted value."""
    parse: Parser | None = meta.get("parse")
    if parse is not None:
        return parse(value, path, ctx)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None:
            return None
        if len(options) != 1:  # unions of schemas need a `parse` hook
            raise TypeError(f"{path}: unsupported union {tp}")
        return convert(options[0], value, path, ctx, meta)
    if attrs.has(tp):
        return build(tp, value, path, ctx)
    if origin is Literal:
        return _enum(args, value, path, ctx, meta)
    if origin is tuple:
        return _list(args[0], value, path, ctx, meta)
    if origin in (Mapping, dict):
        return _mapping(args[1], value, path, ctx)
    return _scalar(tp, value, path, ctx, meta)


_EXPECTED = {
    bool: "a boolean (true or false)",
    int: "an integer",
    float: "a number",
    str: "a string",
}


def _scalar(tp: type, value: object, path: str, ctx: Context, meta: Mapping[Any, Any]) -> object:
    ok = isinstance(value, tp) and not (tp is not bool and isinstance(value, bool))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        hint = ""
        if tp is str and isinstance(value, int | float | bool):
            hint = " (quote it to make it a string)"
        raise ctx.error(
            path, f"expected {_EXPECTED.get(tp, tp.__name__)}, got {describe(value)}{hint}"
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = meta.get("min"), meta.get("max")
        if low is not None and high is not None and not low <= value <= high:
            raise ctx.error(path, f"must be between {low} and {high}, got {value}")
        if low is not None and value < low:
            raise ctx.error(path, f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise ctx.error(path, f"must be at most {high}, got {value}")
    return value


def _enum(
    options: Sequence[object], value: object, path: str, ctx: Context, meta: Mapping[Any, Any]
) -> object:
    if value not in options or isinstance(value, bool):
        listed = ", ".join(repr(o) for o in options)
        hint = suggest(value, [str(o) for o in options]) if isinstance(value, str) else ""
        shown = repr(value) if isinstance(value, str) else describe(value)
        raise ctx.error(path, f"unknown value {shown}, expected one of {listed}{hint}")
    warning = meta.get("warn_values", {}).get(value)
    if warning:
        ctx.warn(path, warning)
    return value


def _list(item: Any, value: object, path: str, ctx: Context, meta: Mapping[Any, Any]) -> object:
    if value is None:
        value = []
    if not isinstance(value, list):
        raise ctx.error(path, f"expected a list, got {describe(value)}")
    min_items = meta.get("min_items")
    if min_items is not None and len(value) < min_items:
        raise ctx.error(path, f"needs at least {min_items} item(s), got {len(value)}")
    return tuple(convert(item, v, f"{path}[{i}]", ctx, {}) for i, v in enumerate(value))


def _mapping(item: Any, value: object, path: str, ctx: Context) -> object:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ctx.error(path, f"expected a mapping, got {describe(value)}")
    result: dict[str, object] = {}
    for key, v in value.items():
        if not isinstance(key, str) or not key:
            raise ctx.error(path, f"names must be non-empty strings, got {describe(key)}")
        result[key] = convert(item, v, join(path, key), ctx, {})
    return result


# -- {class | name, config} entries ---------------------------------------------------------------


@attrs.frozen
class Choice:
    """One module or adapter: its canonical kind, config schema and the names it answers to."""

    kind: str
    config: type[Any]
    classes: tuple[str, ...]
    names: tuple[str, ...] = ()
    #: set for classes that are known but not provided: the error message to give
    removed: str | None = None


ENTRY_KEYS = ("class", "name", "config")


def parse_entry(
    value: object, path: str, ctx: Context, choices: Sequence[Choice], what: str
) -> tuple[Choice, str, object]:
    """``{class: X, config: {...}}`` or ``{name: x, config: {...}}`` -> (choice, X, config)."""
    if not isinstance(value, Mapping):
        raise ctx.error(
            path, f"expected a mapping with 'class' (or 'name') and 'config', got {describe(value)}"
        )
    for key in value:
        if key not in ENTRY_KEYS:
            raise ctx.error(join(path, str(key)), "unknown key" + suggest(str(key), ENTRY_KEYS))
    if "class" in value and "name" in value:
        raise ctx.error(path, "has both 'class' and 'name'; give exactly one")
    if "class" not in value and "name" not in value:
        raise ctx.error(path, f"missing 'class' (or 'name'): which {what} to load")
    form = "class" if "class" in value else "name"
    declared, key_path = value[form], f"{path}.{form}"
    if not isinstance(declared, str):
        raise ctx.error(key_path, f"expected a string, got {describe(declared)}")
    by_form = {n: c for c in choices for n in (c.classes if form == "class" else c.names)}
    choice = by_form.get(declared)
    if choice is None:
        raise ctx.error(key_path, _unknown_entry(declared, form, choices, what))
    if choice.removed is not None:
        raise ctx.error(key_path, choice.removed)
    config = build(choice.config, value.get("config"), f"{path}.config", ctx)
    return choice, declared, config


def _unknown_entry(declared: str, form: str, choices: Sequence[Choice], what: str) -> str:
    other = "name" if form == "class" else "class"
    if any(declared in (c.names if form == "class" else c.classes) for c in choices):
        return f"'{declared}' is a {what} {other}, not a {form}: write `{other}: {declared}`"
    valid = [
        n for c in choices if c.removed is None for n in (c.classes if form == "class" else c.names)
    ]
    hint = suggest(declared, valid)
    if not hint:
        plural = "classes" if form == "class" else "names"
        hint = f"; known {plural}: {', '.join(valid)}" if valid else ""
        if form == "name" and any(not c.names and c.removed is None for c in choices):
            hint += f"; other {what}s are selected with 'class'"
    return f"unknown {what} {form} '{declared}'{hint}"


def choice_of(choices: Sequence[Choice], what: str) -> dict[str, object]:
    """Field metadata for an adapter: ``{class|name, config}`` parsed into that adapter's
    config object. The first choice is the default (also for an explicit ``null``)."""

    def parse(value: object, path: str, ctx: Context) -> object:
        if value is None:
            return choices[0].config()
        return parse_entry(value, path, ctx, choices, what)[2]

    return {"parse": parse}
