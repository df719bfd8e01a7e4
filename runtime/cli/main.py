"""``iii-trio``: the command line. ``iii-trio serve [--config PATH]`` runs the engine; the
inspection commands (``actors``, ``invocations``, ``top``, ...) live in
:mod:`iii_trio.runtime.cli.introspect`.

Startup problems (a bad config, a busy port) are one clear paragraph on stderr and exit
code 2, never a traceback. SIGINT / SIGTERM drain live invocations for up to
``--drain-timeout`` seconds, then every connection is closed with 1012 and the engine stops.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TypeVar

import trio

from iii_trio.runtime.cli import introspect as cli_inspect
from iii_trio.runtime.cli.taskdump import write_task_tree
from iii_trio.runtime.config.loading import EngineConfig
from iii_trio.runtime.config.schema import ConfigError
from iii_trio.runtime.engine import Engine, default_config, load_config
from iii_trio.runtime.modules.catalog import is_available, startup_problem
from iii_trio.runtime.modules.storage.redis import RedisConnectionError

log = logging.getLogger("iii_trio.cli")

EXIT_STARTUP_ERROR = 2

_E = TypeVar("_E", bound=BaseException)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iii-trio", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the engine")
    serve.add_argument(
        "--config", default="config.yaml", help="config file (default ./config.yaml)"
    )
    serve.add_argument(
        "--use-default-config", action="store_true", help="ignore --config, use built-in defaults"
    )
    serve.add_argument(
        "--drain-timeout", type=float, default=10.0, help="seconds to finish live calls on shutdown"
    )
    serve.add_argument("--log-level", default="INFO")
    cli_inspect.add_commands(commands)
    args = parser.parse_args(argv)
    if args.command != "serve":
        return cli_inspect.run(args)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = default_config() if args.use_default_config else load_config(args.config)
    except ConfigError as exc:
        print(f"iii-trio: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    for warning in config.warnings:
        log.warning("%s", warning)
    for entry in config.modules:
        if not is_available(entry):
            log.warning("%s (%s): not available in this build", entry.key_path, entry.declared_as)
        elif (problem := startup_problem(entry)) is not None:
            print(f"iii-trio: {config.source}: {problem}", file=sys.stderr)
            return EXIT_STARTUP_ERROR
    try:
        trio.run(serve_until_signalled, config, args.drain_timeout)
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        unreachable = _find_error(exc, RedisConnectionError)
        if unreachable is not None:  # a module's Redis adapter could not connect at startup
            print(f"iii-trio: {unreachable} (is redis-server running?)", file=sys.stderr)
            return EXIT_STARTUP_ERROR
        bind_error = _find_error(exc, OSError)
        if bind_error is None:
            raise
        print(f"iii-trio: {_bind_error(config, bind_error)}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    return 0


async def serve_until_signalled(config: EngineConfig, drain_timeout: float) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGUSR1) as signals:
        async with trio.open_nursery() as nursery:
            engine = Engine(config)
            await nursery.start(engine.run)
            log.info("worker port listening on ws://%s:%s", config.host, engine.port)
            _log_exposure(engine)
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    _dump_tasks()
                    continue
                log.info("received %s: draining", signal.Signals(signum).name)
                break
            await engine.drain(drain_timeout)
            nursery.cancel_scope.cancel()
    log.info("stopped")


def _log_exposure(engine: Engine) -> None:
    """Which ports are exposed and who they admit, and the descriptor budget (issue 16
    item 7): an operator sees at startup what a port scan of this host would find."""
    for port in engine.exposed():
        opened = not engine.access.auth_token and not engine.access.protected_mode
        level = logging.WARNING if opened and port.reach != "loopback only" else logging.INFO
        log.log(level, "exposed: %s", port.describe())
    descriptors = engine.descriptors
    log.info(
        "descriptors: limit %d, the last %d kept for the engine (reserved_descriptors)",
        descriptors.limit,
        descriptors.reserved,
    )
    caps = engine.connection_caps()
    if sum(caps.values()) > descriptors.peer_ceiling:
        named = ", ".join(f"{name} {cap}" for name, cap in caps.items())
        log.warning(
            "the connection caps (%s) add up to more than the %d descriptors peers may use: "
            "one port can fill them and lock the others out; lower max_connections or raise "
            "the hard descriptor limit (ulimit -Hn)",
            named,
            descriptors.peer_ceiling,
        )


def _dump_tasks() -> None:
    """SIGUSR1: the trio task tree goes to a file; the log names it."""
    try:
        path, count = write_task_tree(os.environ.get("III_TASK_DUMP_DIR"))
    except OSError as exc:
        log.warning("SIGUSR1: cannot write the task tree: %s", exc)
        return
    log.warning("SIGUSR1: task tree (%d tasks) written to %s", count, path)


def _find_error(exc: BaseException, kind: type[_E]) -> _E | None:
    """The ``kind`` error behind a startup failure, through exception groups and causes."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find_error(inner, kind)
            if found is not None:
                return found
    if exc.__cause__ is not None:
        return _find_error(exc.__cause__, kind)
    return None


def _bind_error(config: EngineConfig, exc: OSError) -> str:
    address = f"{config.host}:{config.port}"
    if exc.errno == errno.EADDRINUSE:
        return f"address {address} is already in use: stop the process using it or set `port`."
    return f"cannot listen on {address}: {exc.strerror or exc}"


if __name__ == "__main__":
    sys.exit(main())
