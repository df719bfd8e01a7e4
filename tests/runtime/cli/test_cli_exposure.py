"""``iii-trio serve`` as a deployment sees it (issue 16 items 6, 7, 10): what the startup log
says is exposed, protected mode and the token on a real engine process, and the descriptor
reserve under a low descriptor limit.

Non-loopback peers connect from one of this machine's own non-loopback addresses to the
engine bound on 0.0.0.0 (tests/support/network.py); tests needing one skip without it.
"""

from __future__ import annotations

import os
import re
import resource
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from iii_trio.runtime.connections.access import PROTECTED_MODE_TEXT
from iii_trio.runtime.wire.handshake import HandshakeRejected, connect
from iii_trio.runtime.wire.websocket import ClientWebSocket, ConnectionClosed
from tests.support.network import http_upgrade, non_loopback_ipv4
from tests.support.ports import free_port
from tests.support.raw_worker import raw_worker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # runs `iii-trio serve` as a process

SERVE = [sys.executable, "-m", "iii_trio.runtime", "serve"]


@attrs.define
class Served:
    process: trio.Process
    port: int
    stream_port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text()


@asynccontextmanager
async def serving(
    tmp_path: Path, extra: str = "", *, descriptor_limit: int | None = None
) -> AsyncIterator[Served]:
    """An engine process with the stream module, both ports on 0.0.0.0 and free."""
    port, stream_port = free_port(), free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"port: {port}\n{extra}"
        "modules:\n"
        "  - class: modules::stream::StreamModule\n"
        f"    config: {{port: {stream_port}, host: 0.0.0.0}}\n"
    )
    log_path = tmp_path / "engine.log"

    def limit_descriptors() -> None:  # runs in the child before exec
        if descriptor_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (descriptor_limit // 2, descriptor_limit))

    with log_path.open("w") as log_file:
        process = await trio.lowlevel.open_process(
            [*SERVE, "--config", str(config)],
            stderr=log_file,
            stdout=log_file,
            preexec_fn=limit_descriptors,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        served = Served(process, port, stream_port, log_path)
        try:
            # Real time: the engine process writes this log.
            await wait_until(
                lambda: "descriptors: limit" in served.log_text(),
                what="the engine reports its exposure",
                timeout=20,
            )
            yield served
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_startup_logs_every_exposed_port_and_who_it_admits(tmp_path: Path) -> None:
    async with serving(tmp_path) as served:
        text = served.log_text()
    lines = [line for line in text.splitlines() if "exposed:" in line]
    assert any(
        f"worker port 0.0.0.0:{served.port} (all interfaces): protected mode" in line
        for line in lines
    ), text
    assert any(
        f"stream port 0.0.0.0:{served.stream_port} (all interfaces): protected mode" in line
        for line in lines
    ), text
    assert "auth_token" in lines[0]
    assert "protected_mode: false" in lines[0]


async def test_open_ports_are_a_warning_at_startup(tmp_path: Path) -> None:
    async with serving(tmp_path, "protected_mode: false\n") as served:
        text = served.log_text()
    assert re.search(rf"WARNING .*exposed: worker port 0\.0\.0\.0:{served.port} .*OPEN", text)


async def test_a_served_engine_refuses_outsiders_and_anonymous_stream_clients(
    tmp_path: Path,
) -> None:
    source = non_loopback_ipv4()
    async with serving(tmp_path) as served:
        if source is not None:
            for port in (served.port, served.stream_port):
                answer = await http_upgrade(source, port, "/", source=source)
                assert answer == (403, PROTECTED_MODE_TEXT)
        async with raw_worker(f"ws://127.0.0.1:{served.port}/") as worker:  # loopback: in
            assert "result" in await worker.call("engine::functions::list", {})
    async with serving(tmp_path, "auth_token: tok\n") as served:
        assert (await http_upgrade("127.0.0.1", served.stream_port, "/"))[0] == 401
        headers = {"Authorization": "Bearer tok"}
        assert (await http_upgrade("127.0.0.1", served.stream_port, "/", headers))[0] == 101
        if source is not None:
            answer = await http_upgrade(source, served.port, "/", headers, source=source)
            assert answer[0] == 101


async def test_descriptor_reserve_keeps_the_engine_serving_under_a_flood(
    tmp_path: Path,
) -> None:
    """Hard descriptor limit 256 and 64 reserved: idle stream clients are admitted until
    peers would take the reserve, then refused (503, or closed at once), never left hanging
    in the accept backlog; the engine never holds more than the limit allows, a worker that
    was connected before goes on working, and new ones get in once the flood is gone."""
    limit, reserved = 256, 64
    extra = f"reserved_descriptors: {reserved}\n"
    async with serving(tmp_path, extra, descriptor_limit=limit) as served:
        assert f"descriptors: limit {limit}, the last {reserved}" in served.log_text()
        url = f"ws://127.0.0.1:{served.stream_port}/"
        worker_url = f"ws://127.0.0.1:{served.port}/"
        async with raw_worker(worker_url) as worker, AsyncExitStack() as flood:
            admitted: list[ClientWebSocket] = []
            statuses: list[int] = []
            with trio.fail_after(60):
                while len(statuses) < 20:
                    try:
                        ws = await connect(url)
                    except HandshakeRejected as rejected:
                        statuses.append(rejected.status)
                        continue
                    except (ConnectionClosed, OSError):  # closed at once, maybe before the 503
                        statuses.append(0)
                        continue
                    flood.push_async_callback(ws.aclose)
                    admitted.append(ws)
            assert set(statuses) <= {503, 0}
            open_fds = len(os.listdir(f"/proc/{served.process.pid}/fd"))
            assert open_fds <= limit - reserved + 2  # peers stop below the reserve
            assert len(admitted) >= limit - reserved - 40  # most of the rest went to peers
            assert "result" in await worker.call("engine::functions::list", {})
        assert "out of file descriptors" not in served.log_text().split("descriptors: limit")[1]
        assert "refusing connections: down to the last 64 of 256 descriptors" in served.log_text()
        async with raw_worker(f"ws://127.0.0.1:{served.port}/") as newcomer:
            assert "result" in await newcomer.call("engine::functions::list", {})
