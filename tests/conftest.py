"""Shared fixtures: a real engine on an ephemeral loopback port (tests/support/engine.py);
the ``slow`` marker, given to every test that starts another OS process."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from iii_trio.runtime.engine import Engine
from tests.support.engine import StartEngine, engine_starter

TESTS = Path(__file__).parent

SLOW_FOLDERS = {"conformance", "reliability", "examples"}
"""Every test in these starts processes (official SDKs, served engines, the examples)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.relative_to(TESTS).parts[0] in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _processes_only_in_slow_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make check`` runs ``-m "not slow"``: a test that starts an OS process (redis-server,
    an official SDK, the CLI) needs real time and must be marked ``slow``, or it fails here."""
    if request.node.get_closest_marker("slow") is not None:
        return
    test = request.node.nodeid

    def refuse(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"{test} starts a process: mark it @pytest.mark.slow")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture
async def start_engine(nursery: trio.Nursery) -> StartEngine:
    """``await start_engine(default_timeout=1000, ...)`` runs an engine for the test."""
    return engine_starter(nursery)


@pytest.fixture
async def engine(start_engine: StartEngine) -> Engine:
    return await start_engine()
