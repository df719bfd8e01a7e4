"""A controlled worker on an official Python ``iii-sdk``, driven by JSON lines on stdin.

Run it with the SDK's own interpreter (tests/conformance/harness.py does)::

    .deps/py-iii-sdk-0.25.0/bin/python py_worker.py --url ws://127.0.0.1:PORT --name NAME
        [--bare] [--invocation-timeout-ms N]

(``py_worker.py URL NAME`` works too.) It connects, registers NAME::echo, ::boom, ::count,
::read_count and ::sleepy unless ``--bare``, prints ``{"event": "ready"}`` once the SDK is
connected, then answers each command line ``{"op": ..., "seq": N, ...}`` with
``{"seq": N, "ok": true, "result": ...}`` or
``{"seq": N, "ok": false, "error": {"code", "message", "wire_message", "stacktrace", "type",
"text"}}`` (``text`` is ``str(error)``).
Commands run concurrently (one thread each), so replies may come out of order. Other lines
are events: ``{"event": "trigger_registered" | "trigger_unregistered", "config": {...}}``,
``{"event": "functions_available", "functions": [...]}``. stdout carries only these lines;
everything the SDK prints or logs goes to stderr.

Commands: register {id, behavior: echo|boom|sleep|count|read_count, sleep_ms?, message?,
counter?, description?} · unregister_function {id} · call {function_id, data, timeout_ms?} ·
call_void (alias void) {function_id, data} · enqueue {function_id, data, queue} ·
call_many {function_id, datas} · list_functions · list_workers · log {level, message, data?} ·
metric {name, value?} (an OpenTelemetry counter, flushed at once) ·
register_trigger_type {id, description?} · unregister_trigger_type {id} ·
register_trigger {trigger_type, function_id, config} -> {handle} · unregister_trigger {handle}
· on_functions_available · channel_fill {function_id, bytes} · shutdown.

Two API generations are covered: ``register_worker`` (0.9 and later: P11, P25), a
synchronous client with its own event-loop thread, and the asyncio ``III`` class (0.8 and
earlier: P4), driven here from a loop thread of ours. A new generation is one more adapter
class with the same methods.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

# Replies own the real stdout; anything else printed in this process goes to stderr.
REPLIES = sys.stdout
sys.stdout = sys.stderr
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
_write_lock = threading.Lock()


def jsonable(value: Any) -> Any:
    """json.dumps fallback for SDK objects (pydantic models, dataclasses)."""
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if hasattr(value, "__dict__"):
        return {k: v for k, v in vars(value).items() if not k.startswith("_")}
    if isinstance(value, bytes | bytearray):
        return value.decode(errors="replace")
    return repr(value)


def emit(message: dict[str, Any]) -> None:
    line = json.dumps(message, default=jsonable)
    with _write_lock:
        REPLIES.write(line + "\n")
        REPLIES.flush()


def error_body(error: BaseException) -> dict[str, Any]:
    """The SDK's error as the caller sees it: typed fields where the SDK has them."""
    message = getattr(error, "message", None)
    message = message if isinstance(message, str) else str(error)
    return {
        "code": getattr(error, "code", None),
        "message": message,
        "wire_message": message,  # Python keeps the wire text in .message (str() adds the code)
        "stacktrace": getattr(error, "stacktrace", None),
        "type": type(error).__name__,
        "text": str(error),
    }


# --- handlers ------------------------------------------------------------------------------


class Behaviors:
    """Handlers by name. All are coroutines: every SDK generation runs them on its loop."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}

    def make(
        self, behavior: str, spec: dict[str, Any]
    ) -> Callable[[Any], Coroutine[Any, Any, Any]]:
        counter = spec.get("counter", "default")
        if behavior == "echo":

            async def echo(data: Any) -> Any:
                return data

            return echo
        if behavior == "boom":
            text = spec.get("message", "kaboom")

            async def boom(data: Any) -> Any:
                raise ValueError(text)

            return boom
        if behavior == "sleep":
            default_ms = spec.get("sleep_ms", 0)

            async def sleep(data: Any) -> Any:
                ms = data.get("sleep_ms", default_ms) if isinstance(data, dict) else default_ms
                await asyncio.sleep(ms / 1000)
                return data

            return sleep
        if behavior == "count":

            async def count(data: Any) -> Any:
                self.counters[counter] = self.counters.get(counter, 0) + 1
                return {"count": self.counters[counter]}

            return count
        if behavior == "read_count":

            async def read_count(data: Any) -> Any:
                return {"count": self.counters.get(counter, 0)}

            return read_count
        raise ValueError(f"unknown behavior {behavior!r}")


DEFAULT_FUNCTIONS = [
    ("echo", "echo"),
    ("boom", "boom"),
    ("count", "count"),
    ("read_count", "read_count"),
    ("sleepy", "sleep"),
]


def trigger_handler_class(base: type) -> type:
    """A TriggerHandler (the SDK's own ABC) that reports every callback as an event line."""

    class Recorder(base):  # type: ignore[misc, valid-type]
        async def register_trigger(self, config: Any) -> None:
            emit({"event": "trigger_registered", "config": jsonable(config)})

        async def unregister_trigger(self, config: Any) -> None:
            emit({"event": "trigger_unregistered", "config": jsonable(config)})

    return Recorder


def sdk_logger() -> Any:
    """The SDK's own Logger (OTel log records, sent as LOGS frames): ``iii.Logger`` up to
    0.11, ``iii_helpers.observability.Logger`` from 0.2x."""
    try:
        from iii_helpers.observability import Logger
    except ImportError:
        from iii import Logger
    return Logger(service_name="py-worker")


# --- SDK generations -----------------------------------------------------------------------


class RegisterWorkerSdk:
    """``register_worker`` (0.9 and later): synchronous calls, the SDK's own loop thread."""

    def __init__(self, url: str, name: str, timeout_ms: int | None, bare: bool) -> None:
        import iii

        self.iii_module = iii
        self.error_types: tuple[type[BaseException], ...] = tuple(
            getattr(iii, n) for n in ("InvocationError", "IIIInvocationError") if hasattr(iii, n)
        )
        options: dict[str, Any] = {"worker_name": name}
        if timeout_ms:
            options["invocation_timeout_ms"] = timeout_ms
        # Blocks until connected (or warns after 30 s and keeps retrying in the background).
        self.iii = iii.register_worker(url, iii.InitOptions(**options))
        self.bare = bare

    def wait_connected(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = getattr(self.iii, "get_connection_state", lambda: "connected")
        while state() != "connected":
            if time.monotonic() > deadline:
                raise TimeoutError(f"not connected after {timeout} s (state {state()})")
            time.sleep(0.02)  # real time: the SDK's own thread connects to the engine process

    def register(self, function_id: str, handler: Any, description: str | None) -> Any:
        return self.iii.register_function(function_id, handler, description=description)

    def trigger(self, request: dict[str, Any]) -> Any:
        return self.iii.trigger(request)

    def call(self, function_id: str, data: Any, timeout_ms: int | None) -> Any:
        request = {"function_id": function_id, "payload": data}
        if timeout_ms:
            request["timeout_ms"] = timeout_ms
        return self.iii.trigger(request)

    def call_void(self, function_id: str, data: Any) -> Any:
        action = self.iii_module.TriggerAction.Void()
        return self.iii.trigger({"function_id": function_id, "payload": data, "action": action})

    def enqueue(self, function_id: str, data: Any, queue: str) -> Any:
        action = self.iii_module.TriggerAction.Enqueue(queue=queue)
        return self.iii.trigger({"function_id": function_id, "payload": data, "action": action})

    def list_functions(self) -> dict[str, Any]:
        # No SDK method since 0.9: the engine function, as the SDK docs say.
        result = self.call("engine::functions::list", {}, None)
        return {"functions": result["functions"], "via": "engine"}

    def list_workers(self) -> dict[str, Any]:
        result = self.call("engine::workers::list", {}, None)
        return {"workers": result["workers"], "via": "engine"}

    def register_trigger_type(self, type_id: str, description: str, handler: Any) -> Any:
        return self.iii.register_trigger_type({"id": type_id, "description": description}, handler)

    def unregister_trigger_type(self, type_id: str, description: str) -> None:
        self.iii.unregister_trigger_type({"id": type_id, "description": description})

    def register_trigger(self, trigger_type: str, function_id: str, config: Any) -> Any:
        return self.iii.register_trigger(
            {"type": trigger_type, "function_id": function_id, "config": config}
        )

    def unregister_trigger(self, handle: Any) -> None:
        handle.unregister()

    def on_functions_available(self, callback: Callable[[list[Any]], None]) -> None:
        raise NotImplementedError("this SDK version has no on_functions_available")

    def create_channel(self) -> Any:
        try:
            from iii.helpers import create_channel  # 0.24 and later
        except ImportError:
            return self.iii.create_channel()
        return create_channel(self.iii)

    def shutdown(self) -> None:
        self.iii.shutdown()


class AsyncioIIISdk:
    """The asyncio ``III`` class (0.8 and earlier, P4), run on a loop thread of ours."""

    def __init__(self, url: str, name: str, timeout_ms: int | None, bare: bool) -> None:
        import iii

        self.iii_module = iii
        self.error_types = ()
        self.default_timeout_s = (timeout_ms or 30000) / 1000
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.iii = iii.III(url, iii.InitOptions(worker_name=name))
        self.bare = bare

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def on_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def call() -> Any:
            return fn(*args)

        return self.run(call())

    def wait_connected(self, timeout: float) -> None:
        # P4 starts receiving only after its registration burst: register first, then connect.
        deadline = time.monotonic() + timeout
        self.run(asyncio.wait_for(self.iii.connect(), timeout))
        while self.iii.get_connection_state() != "connected":  # connect() may leave it retrying
            if time.monotonic() > deadline:
                raise TimeoutError(f"not connected after {timeout} s")
            time.sleep(0.02)  # real time: the SDK's event loop connects to the engine process

    def register(self, function_id: str, handler: Any, description: str | None) -> Any:
        return self.on_loop(
            lambda: self.iii.register_function(function_id, handler, description=description)
        )

    def call(self, function_id: str, data: Any, timeout_ms: int | None) -> Any:
        timeout = timeout_ms / 1000 if timeout_ms else self.default_timeout_s
        return self.run(self.iii.trigger(function_id, data, timeout=timeout))

    def call_void(self, function_id: str, data: Any) -> Any:
        return self.on_loop(self.iii.trigger_void, function_id, data)

    def enqueue(self, function_id: str, data: Any, queue: str) -> Any:
        raise NotImplementedError("this SDK version has no enqueue action")

    def list_functions(self) -> dict[str, Any]:
        # The SDK's own method: it validates each row against its pydantic model.
        return {
            "functions": [jsonable(f) for f in self.run(self.iii.list_functions())],
            "via": "sdk",
        }

    def list_workers(self) -> dict[str, Any]:
        return {"workers": [jsonable(w) for w in self.run(self.iii.list_workers())], "via": "sdk"}

    def register_trigger_type(self, type_id: str, description: str, handler: Any) -> Any:
        return self.on_loop(self.iii.register_trigger_type, type_id, description, handler)

    def unregister_trigger_type(self, type_id: str, description: str) -> None:
        self.on_loop(self.iii.unregister_trigger_type, type_id)

    def register_trigger(self, trigger_type: str, function_id: str, config: Any) -> Any:
        return self.on_loop(self.iii.register_trigger, trigger_type, function_id, config)

    def unregister_trigger(self, handle: Any) -> None:
        # The handle sends only from the SDK's loop (off it, the frame is silently dropped).
        self.on_loop(handle.unregister)

    def on_functions_available(self, callback: Callable[[list[Any]], None]) -> None:
        self.on_loop(self.iii.on_functions_available, callback)

    def create_channel(self) -> Any:
        return self.run(self.iii.create_channel())

    def shutdown(self) -> None:
        self.run(self.iii.shutdown())


def open_sdk(url: str, name: str, timeout_ms: int | None, bare: bool) -> Any:
    import iii

    if hasattr(iii, "register_worker"):
        return RegisterWorkerSdk(url, name, timeout_ms, bare)
    return AsyncioIIISdk(url, name, timeout_ms, bare)


# --- commands ------------------------------------------------------------------------------


class Worker:
    def __init__(self, sdk: Any, name: str) -> None:
        self.sdk = sdk
        self.name = name
        self.behaviors = Behaviors()
        self.functions: dict[str, Any] = {}
        self.triggers: dict[str, Any] = {}
        self.trigger_types: dict[str, str] = {}
        self._next_handle = 0
        self._lock = threading.Lock()

    def register(self, function_id: str, behavior: str, spec: dict[str, Any]) -> None:
        handler = self.behaviors.make(behavior, spec)
        self.functions[function_id] = self.sdk.register(
            function_id, handler, spec.get("description")
        )

    def handle(self, command: dict[str, Any]) -> Any:
        op = command["op"]
        sdk = self.sdk
        if op == "register":
            self.register(command["id"], command.get("behavior", "echo"), command)
            return None
        if op == "unregister_function":
            self.functions.pop(command["id"]).unregister()
            return None
        if op == "call":
            return sdk.call(command["function_id"], command.get("data"), command.get("timeout_ms"))
        if op in ("call_void", "void"):
            return sdk.call_void(command["function_id"], command.get("data"))
        if op == "enqueue":
            return sdk.enqueue(command["function_id"], command.get("data"), command["queue"])
        if op == "call_many":
            datas = command["datas"]
            with ThreadPoolExecutor(max(1, len(datas))) as pool:
                return list(pool.map(lambda d: sdk.call(command["function_id"], d, None), datas))
        if op == "list_functions":
            return sdk.list_functions()
        if op == "list_workers":
            return sdk.list_workers()
        if op == "register_trigger_type":
            from iii.triggers import TriggerHandler

            description = command.get("description") or command["id"]
            handler = trigger_handler_class(TriggerHandler)()
            sdk.register_trigger_type(command["id"], description, handler)
            self.trigger_types[command["id"]] = description
            return None
        if op == "unregister_trigger_type":
            description = self.trigger_types.pop(command["id"], command["id"])
            sdk.unregister_trigger_type(command["id"], description)
            return None
        if op == "register_trigger":
            trigger = sdk.register_trigger(
                command["trigger_type"], command["function_id"], command.get("config", {})
            )
            with self._lock:
                self._next_handle += 1
                handle = str(self._next_handle)
            self.triggers[handle] = trigger
            return {"handle": handle}
        if op == "unregister_trigger":
            sdk.unregister_trigger(self.triggers.pop(command["handle"]))
            return None
        if op == "on_functions_available":

            def available(functions: list[Any]) -> None:
                ids = [getattr(f, "function_id", None) or jsonable(f) for f in functions]
                emit({"event": "functions_available", "functions": ids})

            sdk.on_functions_available(available)
            return None
        if op == "channel_fill":
            return self.channel_fill(command["function_id"], command["bytes"])
        if op == "metric":
            # An OpenTelemetry counter on the SDK's meter provider, flushed now: the SDK
            # sends it as an MTRC frame (otherwise every metrics_export_interval_ms, 60 s).
            from opentelemetry import metrics

            provider: Any = metrics.get_meter_provider()
            counter = provider.get_meter("py-worker").create_counter(command["name"])
            counter.add(command.get("value", 1))
            return {"flushed": bool(provider.force_flush())}
        if op == "log":
            getattr(sdk_logger(), command.get("level", "info"))(
                command["message"], command.get("data")
            )
            return None
        raise ValueError(f"unknown op {op!r}")

    def channel_fill(self, function_id: str, size: int) -> dict[str, Any]:
        """A14: make a channel, have another worker fill it, read everything back."""
        channel = self.sdk.create_channel()
        messages: list[str] = []
        channel.reader.on_message(messages.append)
        ref = jsonable(channel.writer_ref)
        self.sdk.call(function_id, {"out": ref, "bytes": size}, None)
        data = asyncio.run(channel.reader.read_all())
        return {"bytes": len(data), "values": sorted(set(data)), "messages": messages}

    def run_command(self, command: dict[str, Any]) -> None:
        seq = command.get("seq")
        try:
            result = self.handle(command)
        except Exception as error:  # every failure is a reply, never a crash
            emit({"seq": seq, "ok": False, "error": error_body(error)})
        else:
            emit({"seq": seq, "ok": True, "result": result})


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("positional", nargs="*", help="URL NAME (old form)")
    parser.add_argument("--url")
    parser.add_argument("--name")
    parser.add_argument("--bare", action="store_true", help="register no default functions")
    parser.add_argument("--invocation-timeout-ms", type=int, default=None)
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.positional:
        args.url, args.name = args.positional
    if not args.url or not args.name:
        parser.error("--url and --name are required")
    return args


def main() -> None:
    args = parse_args(sys.argv[1:])
    sdk = open_sdk(args.url, args.name, args.invocation_timeout_ms, args.bare)
    worker = Worker(sdk, args.name)
    if isinstance(sdk, AsyncioIIISdk):  # P4: registrations before connect (see wait_connected)
        if not args.bare:
            for name, behavior in DEFAULT_FUNCTIONS:
                worker.register(f"{args.name}::{name}", behavior, {})
        sdk.wait_connected(args.connect_timeout)
    else:
        sdk.wait_connected(args.connect_timeout)
        if not args.bare:
            for name, behavior in DEFAULT_FUNCTIONS:
                worker.register(f"{args.name}::{name}", behavior, {})
    emit({"event": "ready"})

    pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="command")
    running: set[Future[None]] = set()
    shutdown_seq = None
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
        except ValueError as error:
            emit({"seq": None, "ok": False, "error": error_body(error)})
            continue
        if command.get("op") == "shutdown":
            shutdown_seq = command.get("seq")
            break
        future = pool.submit(worker.run_command, command)
        running.add(future)
        future.add_done_callback(running.discard)
    # shutdown (or stdin closed): the SDK closes its socket and fails pending calls locally.
    try:
        sdk.shutdown()
    except Exception as error:
        emit({"seq": shutdown_seq, "ok": False, "error": error_body(error)})
    else:
        # Commands still running now fail with the SDK's shutdown error; give them a moment
        # to say so before the shutdown reply.
        wait(list(running), timeout=3)
        emit({"seq": shutdown_seq, "ok": True, "result": None})
    sys.stderr.flush()
    os._exit(0)  # the SDK's non-daemon threads must not keep the process alive


if __name__ == "__main__":
    main()
