"""Acknowledged state writes survive a SIGKILL of the engine process (file_based, D7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iii_trio.sdk import III
from tests.conformance.conftest import start_served_engine, stop_served_engine

pytestmark = pytest.mark.slow  # a served engine, killed and restarted

WRITES = 300


def state_config(path: Path) -> str:
    return f"""modules:
  - class: modules::state::StateModule
    config:
      adapter:
        class: modules::state::adapters::KvStore
        config: {{store_method: file_based, file_path: "{path}"}}
"""


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()  # an existing directory: the database is created inside it
    served = await start_served_engine(tmp_path, state_config(data))
    try:
        async with III(served.url, worker_name="writer").connect() as iii:
            for n in range(WRITES):
                await iii.trigger("state::set", {"scope": "d", "key": f"k{n}", "value": n})
            op = [{"type": "increment", "path": "n", "by": 1}]
            for _ in range(20):
                await iii.trigger("state::update", {"scope": "c", "key": "k", "ops": op})
            served.process.kill()  # right after the last reply: no chance to flush anything
            await served.process.wait()
    finally:
        await stop_served_engine(served)
    assert (data / "kv_store_data.db").exists()

    again = await start_served_engine(tmp_path, state_config(data))
    try:
        async with III(again.url, worker_name="reader").connect() as iii:
            values = await iii.trigger("state::list", {"scope": "d"})
            counter = await iii.trigger("state::get", {"scope": "c", "key": "k"})
    finally:
        await stop_served_engine(again)
    assert values == list(range(WRITES))
    assert counter == {"n": 20}
