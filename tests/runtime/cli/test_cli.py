"""``iii-trio serve`` as a user runs it: a real process, real signals, real ports."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from tests.support.ports import free_port
from tests.support.raw_worker import raw_worker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # runs `iii-trio serve` as a process

SERVE = [sys.executable, "-m", "iii_trio.runtime", "serve"]


def run_serve(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVE, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def test_broken_config_is_one_message_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "port: 49134\n"
        "modules:\n"
        "  - class: modules::api::RestApiModule\n"
        "    config:\n"
        "      cors:\n"
        "        allowed_origin: ['*']\n"
    )
    done = run_serve("--config", str(config))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "modules[0].config.cors.allowed_origin" in done.stderr
    assert "allowed_origins" in done.stderr


def test_a_module_adapter_this_build_lacks_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "modules:\n"
        "  - class: modules::state::StateModule\n"
        "    config:\n"
        "      adapter:\n"
        "        class: modules::state::adapters::Bridge\n"
        "        config: {bridge_url: 'ws://elsewhere:49134'}\n"
    )
    done = run_serve("--config", str(config))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert (
        f"iii-trio: {config}: modules[0].config.adapter: the BridgeAdapter state adapter is not "
        "available in this build" in done.stderr
    )


def test_missing_config_file_is_exit_2(tmp_path: Path) -> None:
    done = run_serve("--config", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2
    assert "not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_busy_port_is_exit_2(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = tmp_path / "config.yaml"
        config.write_text(f"port: {port}\n")
        done = run_serve("--config", str(config))
    assert done.returncode == 2
    assert "already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_redis_at_startup_is_one_message_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    url = f"redis://127.0.0.1:{free_port()}"  # nothing listens there
    config.write_text(
        "port: 0\n"
        "modules:\n"
        "  - class: modules::queue::QueueModule\n"
        "    config:\n"
        "      adapter:\n"
        "        class: modules::queue::RedisAdapter\n"
        f"        config: {{redis_url: '{url}'}}\n"
    )
    done = run_serve("--config", str(config))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"iii-trio: queue: cannot connect to {url}" in done.stderr


@attrs.define
class Served:
    process: trio.Process
    port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text()

    async def wait_for_log(self, text: str) -> None:
        # Real time: the engine process writes this log.
        await wait_until(lambda: text in self.log_text(), what=f"the log says {text!r}", timeout=20)


@asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[Served]:
    """``iii-trio serve`` as a real process on a free port, killed if a test leaves it up."""
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f"port: {port}\n")
    log_path = tmp_path / "engine.log"
    with log_path.open("w") as log_file:
        process = await trio.lowlevel.open_process(
            [*SERVE, "--config", str(config)], stderr=log_file, stdout=log_file
        )
        try:
            served = Served(process, port, log_path)
            await served.wait_for_log("listening on")
            yield served
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_serve_logs_its_port_and_stops_on_sigterm(tmp_path: Path) -> None:
    async with serving(tmp_path) as served:
        assert f"ws://0.0.0.0:{served.port}" in served.log_text()
        async with raw_worker(f"ws://127.0.0.1:{served.port}/") as worker:
            result = await worker.call("engine::functions::list", {})
            assert result["result"] == {"functions": []}
            served.process.send_signal(signal.SIGTERM)
            with trio.fail_after(20):
                code = await served.process.wait()
    assert code == 0
    text = served.log_text()
    assert text.count("listening on") == 1
    assert "received SIGTERM" in text


async def test_sigterm_drains_a_live_call_before_stopping(tmp_path: Path) -> None:
    async with serving(tmp_path) as served:
        url = f"ws://127.0.0.1:{served.port}/"
        async with raw_worker(url) as target, raw_worker(url) as caller:
            await target.register("slow::fn")
            await trio.sleep(0.1)  # real time: the engine process applies the registration
            await caller.invoke("slow::fn", {}, "in-flight")
            invoke = await target.expect("invokefunction")
            served.process.send_signal(signal.SIGTERM)
            await served.wait_for_log("draining")
            # The engine waits for the live call: its answer still reaches the caller.
            await target.answer(invoke, "finished during the drain")
            result = await caller.expect("invocationresult")
            assert result["result"] == "finished during the drain"
            with trio.fail_after(20):
                code = await served.process.wait()
    assert code == 0


async def test_sigusr1_writes_the_task_tree_to_the_file_it_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("III_TASK_DUMP_DIR", str(tmp_path))  # the engine process inherits it
    async with serving(tmp_path) as served:
        served.process.send_signal(signal.SIGUSR1)
        await served.wait_for_log("task tree")
        text = served.log_text()
        found = re.search(r"SIGUSR1: task tree \((\d+) tasks\) written to (\S+)", text)
        assert found, text
        dump_file = trio.Path(found.group(2))
        assert str(dump_file.parent) == str(tmp_path)
        dump = await dump_file.read_text()
        # The engine keeps running: a signal for the tree is not a signal to stop.
        async with raw_worker(f"ws://127.0.0.1:{served.port}/") as worker:
            assert "result" in await worker.call("engine::functions::list", {})
    lines = dump.splitlines()
    assert lines[0].startswith(f"# iii-trio task tree, pid {served.process.pid}")
    assert len(lines) - 1 == int(found.group(1)) > 5
    assert "serve_until_signalled" in dump
    assert "[listener:worker-port#" in dump  # the actor each task runs
    assert any("@ " in line and ".py:" in line for line in lines[1:])  # where each task waits
    assert "received SIGUSR1" not in served.log_text()
