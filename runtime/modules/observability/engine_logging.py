"""``level`` and ``format`` (spec/modules.md §9.1): the engine's own log output while the
module is loaded.

``level`` (``trace`` | ``debug`` | ``info`` | ``warn`` | ``error``, any case; ``trace`` is
Python's DEBUG) sets the level of the ``iii_trio`` loggers, overriding ``--log-level`` for
them. ``format: json`` writes each record as one JSON object per line (``timestamp``,
``level``, ``target``, ``message``, ``exception`` when there is one) on the console handlers
``iii-trio serve`` installs (plain ``StreamHandler``s on the root logger); ``default``
keeps the text format. Anything else is refused with a warning at startup, never ignored
silently. Both are put back when the module stops.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import orjson

log = logging.getLogger("iii_trio.otel")

ENGINE_LOGGER = "iii_trio"
LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "target": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def console_handlers() -> list[logging.Handler]:
    """The root logger's plain stream handlers (what ``logging.basicConfig`` installs);
    subclasses such as test capture handlers are left alone."""
    return [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]


@contextmanager
def engine_log_output(level: str | None, fmt: str | None) -> Iterator[None]:
    engine_logger = logging.getLogger(ENGINE_LOGGER)
    previous_level = engine_logger.level
    previous_formats: list[tuple[logging.Handler, logging.Formatter | None]] = []
    if level is not None:
        wanted = LEVELS.get(level.lower())
        if wanted is None:
            log.warning(
                "observability: level %r is not one of %s: engine log level unchanged",
                level,
                ", ".join(sorted(set(LEVELS) - {"warning"})),
            )
        else:
            engine_logger.setLevel(wanted)
    if fmt == "json":
        for handler in console_handlers():
            previous_formats.append((handler, handler.formatter))
            handler.setFormatter(JsonFormatter())
        if not previous_formats:
            log.warning("observability: format json: no console log handler to format")
    try:
        yield
    finally:
        engine_logger.setLevel(previous_level)
        for handler, formatter in previous_formats:
            handler.setFormatter(formatter)
