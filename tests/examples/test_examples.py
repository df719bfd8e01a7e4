"""The examples run as real processes against a real engine, called through the SDK."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.pubsub.config import PubSubConfig
from iii_trio.runtime.modules.state.config import StateConfig
from iii_trio.sdk import III, InvocationError
from tests.support.engine import StartEngine, worker_url
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TSX = EXAMPLES / "node" / "node_modules" / ".bin" / "tsx"


@asynccontextmanager
async def example(argv: list[str], engine: Engine, log: Path) -> AsyncIterator[None]:
    with log.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            argv,
            stdout=log_file,
            stderr=log_file,
            env={**os.environ, "III_URL": worker_url(engine)},
        )
        try:
            yield
        finally:
            process.terminate()
            with trio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


async def wait_for(engine: Engine, *function_ids: str) -> None:
    # Real time: the example processes start and register on their own schedule.
    await wait_until(
        lambda: all(f in engine.registry.functions for f in function_ids),
        what=f"the example registers {', '.join(function_ids)}",
        timeout=60,
    )


async def test_embedding_worker(engine: Engine, tmp_path: Path) -> None:
    argv = [sys.executable, str(EXAMPLES / "embedding_worker.py")]
    async with example(argv, engine, tmp_path / "embedding.log"):
        await wait_for(engine, "embedding::similarity", "embedding::generate")
        async with III(worker_url(engine), worker_name="test").connect() as iii:
            same = await iii.trigger("embedding::similarity", {"a": [1, 2, 3], "b": [2, 4, 6]})
            assert math.isclose(same["similarity"], 1.0)
            opposite = await iii.trigger("embedding::similarity", {"a": [1, 0], "b": [-1, 0]})
            assert math.isclose(opposite["similarity"], -1.0)
            with pytest.raises(InvocationError, match="same length"):
                await iii.trigger("embedding::similarity", {"a": [1], "b": [1, 2]})
            texts = ["the cat sat", "the cat sat", "stock markets fell"]
            generated = await iii.trigger("embedding::generate", {"texts": texts})
    assert generated["dimensions"] == 64
    first, again, other = generated["embeddings"]
    assert first == again  # deterministic
    assert math.isclose(sum(v * v for v in first), 1.0)
    assert first != other


async def test_typescript_worker_and_python_worker_call_each_other(
    engine: Engine, tmp_path: Path
) -> None:
    if not TSX.exists():
        pytest.fail(f"{TSX} is missing: run `make examples-deps` (make test does)")
    python = [sys.executable, str(EXAMPLES / "embedding_worker.py")]
    node = [str(TSX), str(EXAMPLES / "node" / "greeter.ts")]
    async with (
        example(python, engine, tmp_path / "embedding.log"),
        example(node, engine, tmp_path / "greeter.log"),
    ):
        await wait_for(engine, "embedding::generate", "node::compare", "node::greet")
        async with III(worker_url(engine), worker_name="test").connect() as iii:
            greeting = await iii.trigger("node::greet", {"name": "trio"})
            # TypeScript -> Python (generate, similarity) -> TypeScript -> here.
            same = await iii.trigger("node::compare", {"a": "red apples", "b": "red apples"})
            different = await iii.trigger("node::compare", {"a": "red apples", "b": "tax law"})
    assert greeting == {"greeting": "hello, trio"}
    assert math.isclose(same["similarity"], 1.0)
    assert different["similarity"] < 0.9


async def test_agent_worker(start_engine: StartEngine, tmp_path: Path) -> None:
    # The engine's own StateModule (in memory) and PubSubModule (local).
    engine = await start_engine(
        modules=(
            ModuleEntry("state", "modules::state::StateModule", "modules[0]", StateConfig()),
            ModuleEntry("pubsub", "modules::pubsub::PubSubModule", "modules[1]", PubSubConfig()),
        )
    )
    published: list[Any] = []
    listener = III(worker_url(engine), worker_name="listener")

    @listener.function(id="listener::replies")
    async def replies(data: Any) -> None:
        published.append(data)

    listener.register_trigger("subscribe", "listener::replies", {"topic": "agent.replies"})
    argv = [sys.executable, str(EXAMPLES / "agent_worker.py")]
    async with listener.connect(), example(argv, engine, tmp_path / "agent.log"):
        await wait_for(engine, "agent::chat")
        async with III(worker_url(engine), worker_name="test").connect() as iii:
            first = await iii.trigger("agent::chat", {"conversation_id": "c1", "message": "hi"})
            second = await iii.trigger(
                "agent::chat", {"conversation_id": "c1", "message": "how are you?"}
            )
            stored = await iii.trigger("state::get", {"scope": "conversations", "key": "c1"})
            triggers = await iii.list_triggers()
        await wait_until(lambda: len(published) >= 2, what="both turns are published")
    assert first == {"reply": "Noted: hi (turn 1)", "turns": 1}
    assert second == {"reply": "Good question. (turn 2)", "turns": 2}
    assert [turn["role"] for turn in stored] == ["user", "agent", "user", "agent"]
    assert sorted(p["reply"] for p in published) == sorted([first["reply"], second["reply"]])
    assert all(p["conversation_id"] == "c1" for p in published)
    # The queue binding is registered (parked until the QueueModule provides `queue`).
    inbox = [t for t in triggers if t["trigger_type"] == "queue"]
    assert inbox == [
        {
            "id": inbox[0]["id"],
            "trigger_type": "queue",
            "function_id": "agent::chat",
            "config": {"topic": "agent.inbox"},
            "metadata": None,
        }
    ]
