"""The wire rows of ``engine::actors::list`` / ``engine::actors::tree``, made from the actor
toolkit's snapshot records: the exact JSON bytes (key order included), and the engine's
tree with its connections under the listener."""

from __future__ import annotations

import functools
from typing import Any

import trio
from trio.testing import MockClock

from iii_trio.actors import Actor, ActorSystem
from iii_trio.runtime.builtins.actor_rows import actor_row, tree_row
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.wire.protocol import encode_json
from tests.support.engine import worker_url
from tests.support.raw_worker import raw_worker

ROOT, A = "gate:root#000001", "gate:a#000002"


class _Idle(Actor):
    kind = "gate"

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()


async def test_rows_and_tree_keep_their_json_bytes(autojump_clock: MockClock) -> None:
    system = ActorSystem(wall_clock_ms=lambda: 1234)
    child = _Idle("a", mailbox_capacity=4)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            start = functools.partial
            await nursery.start(start(system.run_actor, _Idle("root"), None, actor_id=ROOT))
            await nursery.start(start(system.run_actor, child, ROOT, actor_id=A, restarts=3))
            assert child.mailbox is not None
            child.mailbox.try_send(1)
            child.mailbox.try_send(2)
            child.mailbox.receive_nowait()

            root = (
                b'{"id":"gate:root#000001","kind":"gate","name":"root","parent":null,'
                b'"state":"running","started_at":1234,"restarts":0,'
                b'"mailbox":{"depth":0,"peak":0,"capacity":0}'
            )
            a = (
                b'{"id":"gate:a#000002","kind":"gate","name":"a","parent":"gate:root#000001",'
                b'"state":"running","started_at":1234,"restarts":3,'
                b'"mailbox":{"depth":1,"peak":2,"capacity":4}'
            )
            rows = [actor_row(row) for row in system.rows()]
            assert encode_json(rows) == b"[" + root + b"}," + a + b"}]"
            tree = [tree_row(node) for node in system.tree()]
            assert encode_json(tree) == b"[" + root + b',"children":[' + a + b',"children":[]}]}]'
            nursery.cancel_scope.cancel()


async def test_the_tree_shows_each_connection_under_the_listener(engine: Engine) -> None:
    async with raw_worker(worker_url(engine)) as watcher, raw_worker(worker_url(engine)):
        roots = (await watcher.call("engine::actors::tree", {}))["result"]["roots"]
    [listener] = [node for node in roots[0]["children"] if node["kind"] == "listener"]
    assert listener["name"] == "worker-port"
    assert [child["kind"] for child in listener["children"]] == ["connection", "connection"]
    assert all(child["parent"] == listener["id"] for child in listener["children"])
    assert all(child["children"] == [] for child in listener["children"])
