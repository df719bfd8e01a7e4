"""Engine configuration: ``config.yaml`` -> :class:`EngineConfig` (spec/modules.md §1, D14).

Both file schemas are accepted, also mixed: ``modules: [{class, config}]`` (seed) and
``workers: [{name, config}]`` (newer); ``modules`` entries come first. ``${VAR}`` and
``${VAR:default}`` are expanded in the raw text before YAML parsing. Every problem is one
:class:`ConfigError` naming the file, the key path and, where one exists, the closest valid
name; keys other iii versions use are accepted and reported in ``EngineConfig.warnings``.

The module kinds a file may name are not known here: the caller passes them (``kinds``, the
modules' own declarations, :mod:`iii_trio.runtime.modules.catalog`), each with the schema of
its settings. The generic walker is :mod:`iii_trio.runtime.config.schema`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from iii_trio.runtime.config.schema import (
    NON_NEGATIVE,
    POSITIVE,
    Choice,
    ConfigError,
    Context,
    build,
    describe,
    join,
    parse_entry,
)

DEFAULT_PORT = 49134


@attrs.frozen
class ModuleEntry:
    """One module to load, in file order."""

    #: canonical: rest_api, state, stream, queue, pubsub, cron, observability, worker,
    #: telemetry, http_functions, exec, bridge_client
    kind: str
    #: the class or name as written in the file, e.g. ``modules::api::RestApiModule``
    declared_as: str
    #: where it was declared, e.g. ``modules[0]`` or ``workers[1]``
    key_path: str
    #: the typed config of that module, defaults filled (its kind's schema class)
    config: Any


def _unset_if_empty(token: str | None) -> str | None:
    return token or None


@attrs.frozen(kw_only=True)
class EngineConfig:
    """Everything the engine needs to start.

    ``port`` 0 or missing in a *file* means 49134 (spec); built in Python, ``port=0`` keeps
    its socket meaning (an ephemeral port, as tests use). ``auth_token`` ``""`` is stored as
    ``None`` (unset). ``warnings`` are accepted-but-ignored settings, one line each, for the
    CLI to log. The exposure and limit keys (``host`` .. ``max_worker_channels``) are
    described in docs/configuration.md "Exposure and limits".
    """

    port: int = DEFAULT_PORT
    host: str = "0.0.0.0"
    default_timeout: int = 300000
    max_message_size: int = 67108864
    max_in_flight_per_worker: int = 1024
    auth_token: str | None = attrs.field(default=None, converter=_unset_if_empty)
    #: without ``auth_token``, refuse peers that are not on loopback (worker, stream ports)
    protected_mode: bool = True
    #: sockets open at once on the worker port (workers, /otel, channel sides)
    max_connections: int = 8192
    #: of those, from one non-loopback address (0: no per-address cap)
    max_connections_per_address: int = 1024
    #: ms of inbound silence before a ping; ms after it without an answer before closing
    keepalive_interval: int = 30000
    keepalive_timeout: int = 30000
    #: descriptors kept free for the engine's own use (files, Redis, outgoing HTTP)
    reserved_descriptors: int = 128
    max_functions_per_worker: int = 10000
    max_triggers_per_worker: int = 10000
    max_trigger_types_per_worker: int = 1000
    max_channels_per_worker: int = 1000
    #: channels created by workers (``engine::channels::create``), all workers together
    max_worker_channels: int = 10000
    modules: tuple[ModuleEntry, ...] = ()
    source: str = "<defaults>"
    warnings: tuple[str, ...] = ()


# -- loading -----------------------------------------------------------------------------------


def load_config(
    path: str | os.PathLike[str],
    *,
    kinds: Sequence[Choice],
    environ: Mapping[str, str] | None = None,
) -> EngineConfig:
    """Read, interpolate (``environ`` defaults to ``os.environ``), parse and validate a file
    whose module entries name one of ``kinds``."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            source,
            "",
            f"Config file not found: {source} "
            "(pass --use-default-config to start with the built-in defaults)",
            standalone=True,
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "", f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read the file: {exc.strerror or exc}") from None
    return parse_config(text, kinds=kinds, source=source, environ=environ)


def parse_config(
    text: str,
    *,
    kinds: Sequence[Choice],
    source: str = "config.yaml",
    environ: Mapping[str, str] | None = None,
) -> EngineConfig:
    """Interpolate, parse and validate config text; ``source`` names it in messages."""
    expanded = interpolate(text, os.environ if environ is None else environ, source=source)
    try:
        data = yaml.load(expanded, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(source, exc) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, "", f"invalid YAML: {exc}") from None
    except RecursionError:
        # PyYAML parses nesting recursively: thousands of '[' would end in a traceback.
        raise ConfigError(source, "", "invalid YAML: nested too deeply") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            source,
            "",
            f"the top level must be a mapping of keys (port, modules, ...), got {describe(data)}",
        )
    ctx = Context(source, kinds)
    top = build(_TopLevel, data, "", ctx)
    _reject_repeated_modules(top.modules + top.workers, ctx)
    settings = {
        field.name: getattr(top, field.name)
        for field in attrs.fields(_TopLevel)
        if field.name not in ("port", "modules", "workers")
    }
    return EngineConfig(
        port=top.port or DEFAULT_PORT,
        **settings,
        modules=top.modules + top.workers,
        source=source,
        warnings=tuple(ctx.warnings),
    )


def default_config(kinds: Sequence[Choice], names: Sequence[str]) -> EngineConfig:
    """``--use-default-config``: the kinds named in ``names`` with default settings, in that
    order."""
    by_kind = {choice.kind: choice for choice in kinds}
    entries = [
        ModuleEntry(name, by_kind[name].classes[0], f"modules[{i}]", by_kind[name].config())
        for i, name in enumerate(names)
    ]
    return EngineConfig(modules=tuple(entries))


def _parse_modules(value: object, path: str, ctx: Context) -> tuple[ModuleEntry, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ctx.error(path, f"expected a list of module entries, got {describe(value)}")
    entries = []
    for i, item in enumerate(value):
        key_path = f"{path}[{i}]"
        choice, declared, config = parse_entry(item, key_path, ctx, ctx.module_kinds, "module")
        entries.append(ModuleEntry(choice.kind, declared, key_path, config))
    return tuple(entries)


def _reject_repeated_modules(entries: tuple[ModuleEntry, ...], ctx: Context) -> None:
    """One module of each kind: two would fight over ports, stores and trigger types."""
    first: dict[str, ModuleEntry] = {}
    for entry in entries:
        if entry.kind in first and entry.kind != "worker":
            earlier = first[entry.kind]
            raise ctx.error(
                entry.key_path,
                f"{entry.declared_as} is already loaded by {earlier.key_path} "
                f"({earlier.declared_as}); list each module once",
            )
        first.setdefault(entry.kind, entry)


@attrs.frozen(kw_only=True)
class _TopLevel:
    """The file's top-level keys (spec §1.2); ``port`` 0 is mapped to 49134 afterwards."""

    port: int = attrs.field(default=DEFAULT_PORT, metadata={"min": 0, "max": 65535})
    host: str = "0.0.0.0"
    default_timeout: int = attrs.field(default=300000, metadata=POSITIVE)
    max_message_size: int = attrs.field(default=67108864, metadata=POSITIVE)
    max_in_flight_per_worker: int = attrs.field(default=1024, metadata=POSITIVE)
    auth_token: str | None = None
    protected_mode: bool = True
    max_connections: int = attrs.field(default=8192, metadata=POSITIVE)
    max_connections_per_address: int = attrs.field(default=1024, metadata=NON_NEGATIVE)
    keepalive_interval: int = attrs.field(default=30000, metadata=NON_NEGATIVE)
    keepalive_timeout: int = attrs.field(default=30000, metadata=POSITIVE)
    reserved_descriptors: int = attrs.field(default=128, metadata=NON_NEGATIVE)
    max_functions_per_worker: int = attrs.field(default=10000, metadata=POSITIVE)
    max_triggers_per_worker: int = attrs.field(default=10000, metadata=POSITIVE)
    max_trigger_types_per_worker: int = attrs.field(default=1000, metadata=POSITIVE)
    max_channels_per_worker: int = attrs.field(default=1000, metadata=POSITIVE)
    max_worker_channels: int = attrs.field(default=10000, metadata=POSITIVE)
    modules: tuple[ModuleEntry, ...] = attrs.field(default=(), metadata={"parse": _parse_modules})
    workers: tuple[ModuleEntry, ...] = attrs.field(default=(), metadata={"parse": _parse_modules})


# -- YAML --------------------------------------------------------------------------------------

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key_node.value}'", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _yaml_error(source: str, exc: yaml.MarkedYAMLError) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = exc.problem or "syntax error"
    if exc.context and exc.problem:
        problem = f"{problem} ({exc.context})"
    return ConfigError(source, where, f"invalid YAML: {problem}")


# -- interpolation (§1.5) ----------------------------------------------------------------------

#: ``${NAME}`` or ``${NAME:default}``; NAME has no ``}`` or ``:``; the default is everything
#: after the first colon up to the closing brace.
PLACEHOLDER = re.compile(r"\$\{([^}:\n]*)(?::([^}\n]*))?\}")


def interpolate(text: str, environ: Mapping[str, str], *, source: str) -> str:
    """Expand ``${VAR}`` / ``${VAR:default}`` in raw config text (comments included).

    A set variable wins even when empty; ``${X:-a}`` gives ``-a`` (``:-`` is not special);
    an unset variable without default is a :class:`ConfigError` naming it.
    """

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if not name:
            where, _ = _locate(text, match.start())
            raise ConfigError(source, where, f"empty variable name in '{match.group(0)}'")
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        where, in_comment = _locate(text, match.start())
        hint = " (placeholders in comments are expanded too)" if in_comment else ""
        raise ConfigError(
            source,
            where,
            f"environment variable {name} is not set and '{match.group(0)}' has no default: "
            f"set it or write '${{{name}:default}}'{hint}",
        )

    return PLACEHOLDER.sub(substitute, text)


def _locate(text: str, offset: int) -> tuple[str, bool]:
    """(key path of the value holding ``offset``, or ``line L, column C``; True if in a comment)."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    fallback = f"line {line}, column {column}"
    # Placeholders become same-length filler so the text parses and offsets stay put.
    masked = PLACEHOLDER.sub(lambda m: "x" * len(m.group(0)), text)
    try:
        root = yaml.compose(masked, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return fallback, False
    if root is None:
        return fallback, True
    found = _path_in(root, offset, "")
    if found is None:
        return fallback, True
    return (found or fallback), False


def _path_in(node: yaml.Node, offset: int, path: str) -> str | None:
    """Key path of the scalar containing ``offset`` (``""`` for the root), else None."""
    if not node.start_mark.index <= offset < max(node.end_mark.index, node.start_mark.index + 1):
        return None
    if isinstance(node, yaml.ScalarNode):
        return path
    children: list[tuple[str, yaml.Node]] = []
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            key_path = join(path, name)
            children += [(key_path, key), (key_path, value)]
    elif isinstance(node, yaml.SequenceNode):
        children = [(f"{path}[{i}]", item) for i, item in enumerate(node.value)]
    for child_path, child in children:
        found = _path_in(child, offset, child_path)
        if found is not None:
            return found
    return None
