"""Blocking clients for the hypothesis fuzz tests (hypothesis drives plain functions; the
engine under test runs in its own process, so nothing here shares its event loop).

``SyncWorker`` speaks WebSocket over a blocking socket: wsproto for the handshake and for
reading, hand-built masked frames for sending (so a text frame can carry bytes that are not
UTF-8). ``engine_server`` runs ``iii-trio serve`` for a whole test module.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from iii_trio.runtime.wire import frames as ws_frames
from tests.conformance.conftest import serve_command
from tests.support.ports import free_port

TIMEOUT = 10.0


class Closed(Exception):
    """The engine closed this socket (a legitimate answer to some bad input)."""


class SyncWorker:
    def __init__(self, port: int, path: str = "/") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.messages: deque[str | bytes] = deque()
        self.closed = False
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        self.accepted = False
        try:
            self.sock.sendall(self.ws.send(Request(host="127.0.0.1", target=path)))
            while not self.accepted:
                self._pump(self._read())
            hello = orjson.loads(self.recv())
        except BaseException:
            self.sock.close()
            raise
        assert hello["type"] == "workerregistered", hello
        self.worker_id: str = hello["worker_id"]

    def _read(self) -> bytes:
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as exc:
            self.closed = True
            raise Closed(str(exc)) from None
        if not data:
            self.closed = True
            raise Closed("EOF")
        return data

    def send_frame(self, payload: bytes, opcode: int = ws_frames.OP_TEXT) -> None:
        try:
            self.sock.sendall(ws_frames.masked_frame(opcode, payload))
        except (ConnectionResetError, BrokenPipeError) as exc:
            self.closed = True
            raise Closed(str(exc)) from None

    def send(self, frame: dict[str, Any]) -> None:
        self.send_frame(orjson.dumps(frame))

    def _pump(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, RejectConnection):
                raise Closed(f"rejected with {event.status_code}")
            elif isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self.messages.append("".join(self._text))
                    self._text = []
            elif isinstance(event, BytesMessage):
                self._bytes.append(bytes(event.data))
                if event.message_finished:
                    self.messages.append(b"".join(self._bytes))
                    self._bytes = []
            elif isinstance(event, Ping):
                self.sock.sendall(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.closed = True

    def recv(self, timeout: float = TIMEOUT) -> str | bytes:
        deadline = time.monotonic() + timeout
        while not self.messages:
            if self.closed:
                raise Closed("closed")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message")
            self.sock.settimeout(left)
            try:
                self._pump(self._read())
            except TimeoutError:
                raise TimeoutError("no message") from None
        return self.messages.popleft()

    def recv_json(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        frame: dict[str, Any] = orjson.loads(self.recv(timeout))
        return frame

    def drain(self) -> None:
        """Read whatever has arrived, without waiting (so the engine never sees a stalled
        reader here); raises :class:`Closed` when the engine closed the socket."""
        self.sock.setblocking(False)
        try:
            while True:
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    break
                except (ConnectionResetError, BrokenPipeError) as exc:
                    self.closed = True
                    raise Closed(str(exc)) from None
                if not data:
                    self.closed = True
                    break
                self._pump(data)
        finally:
            self.sock.setblocking(True)
        self.messages.clear()
        if self.closed:
            raise Closed("closed")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class GoodPair:
    """A caller and a target that must keep working whatever the fuzzer sends."""

    def __init__(self, port: int) -> None:
        self.target = SyncWorker(port)
        self.caller = SyncWorker(port)
        self.target.send({"type": "registerfunction", "id": "good::echo"})
        self.target.send({"type": "ping"})  # frames apply in order: once pong is in,
        assert self.target.recv_json() == {"type": "pong"}  # the function is registered
        self.calls = 0
        self.check()

    def check(self) -> None:
        """One call through the engine, answered by the target, within TIMEOUT."""
        self.calls += 1
        invocation_id = str(uuid.uuid4())
        self.caller.send(
            {
                "type": "invokefunction",
                "invocation_id": invocation_id,
                "function_id": "good::echo",
                "data": {"n": self.calls},
            }
        )
        invoke = self.target.recv_json()
        assert invoke["type"] == "invokefunction", invoke
        self.target.send(
            {
                "type": "invocationresult",
                "invocation_id": invoke["invocation_id"],
                "function_id": "good::echo",
                "result": invoke["data"]["n"],
            }
        )
        result = self.caller.recv_json()
        assert result["invocation_id"] == invocation_id, result
        assert result.get("result") == self.calls, result

    def close(self) -> None:
        self.target.close()
        self.caller.close()


class EngineServer:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log
        self._seen = 0

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def assert_healthy(self) -> None:
        """Still running, and no traceback logged since the last check."""
        assert self.process.poll() is None, f"the engine exited\n{self.log_text()[-4000:]}"
        text = self.log_text()
        fresh, self._seen = text[self._seen :], len(text)
        assert "Traceback" not in fresh, f"the engine logged a traceback:\n{fresh[-4000:]}"


@contextmanager
def engine_server(directory: Path, extra_config: str = "") -> Iterator[EngineServer]:
    """``iii-trio serve`` on a free port for the block; SIGTERM after it."""
    for _attempt in range(3):
        port = free_port()
        config = directory / f"engine-{port}.yaml"
        config.write_text(f"port: {port}\n{extra_config}")
        log = directory / f"engine-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*serve_command(), "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        server = EngineServer(process, port, log)
        deadline = time.monotonic() + 20
        while f":{port}" not in server.log_text() and process.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)  # real time: the engine process is starting
        if f":{port}" in server.log_text():
            break
        process.kill()
        process.wait()
        if "already in use" not in server.log_text():
            raise AssertionError(f"the engine did not start\n{server.log_text()}")
    else:
        raise AssertionError("no free port for the engine")
    try:
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
