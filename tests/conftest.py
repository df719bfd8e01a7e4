"""Shared fixtures: a real engine on an ephemeral loopback port (tests/support/engine.py)."""

from __future__ import annotations

import pytest
import trio

from iii_trio.runtime.engine import Engine
from tests.support.engine import StartEngine, engine_starter


@pytest.fixture
async def start_engine(nursery: trio.Nursery) -> StartEngine:
    """``await start_engine(default_timeout=1000, ...)`` runs an engine for the test."""
    return engine_starter(nursery)


@pytest.fixture
async def engine(start_engine: StartEngine) -> Engine:
    return await start_engine()
