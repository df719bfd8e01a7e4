"""Acknowledged stream writes survive a SIGKILL of the engine process (file_based, D7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iii_trio.sdk import III
from tests.conformance.conftest import start_served_engine, stop_served_engine

pytestmark = pytest.mark.slow  # a served engine, killed and restarted

WRITES = 200


def stream_config(path: Path) -> str:
    return f"""modules:
  - class: modules::stream::StreamModule
    config:
      port: 0
      host: 127.0.0.1
      adapter:
        class: modules::stream::adapters::KvStore
        config: {{store_method: file_based, file_path: "{path}"}}
"""


async def test_acknowledged_stream_writes_survive_kill_9(tmp_path: Path) -> None:
    database = tmp_path / "streams.db"
    served = await start_served_engine(tmp_path, stream_config(database))
    try:
        async with III(served.url, worker_name="writer").connect() as iii:
            for n in range(WRITES):
                item = {"stream_name": "chat", "group_id": f"g{n % 3}", "item_id": f"m{n}"}
                await iii.trigger("stream::set", {**item, "data": n})
            served.process.kill()  # right after the last reply: no chance to flush anything
            await served.process.wait()
    finally:
        await stop_served_engine(served)

    again = await start_served_engine(tmp_path, stream_config(database))
    try:
        async with III(again.url, worker_name="reader").connect() as iii:
            groups = [
                await iii.trigger("stream::list", {"stream_name": "chat", "group_id": f"g{g}"})
                for g in range(3)
            ]
            listed = await iii.trigger("stream::list_all", {})
    finally:
        await stop_served_engine(again)
    assert groups == [list(range(g, WRITES, 3)) for g in range(3)]
    assert listed == {"stream": [{"id": "chat", "groups": ["g0", "g1", "g2"]}], "count": 1}
