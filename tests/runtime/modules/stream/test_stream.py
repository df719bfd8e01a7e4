"""StreamModule through a real engine: trio-SDK workers and real WebSocket clients
(spec/modules.md §5)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from iii_trio.runtime.engine import Engine
from iii_trio.sdk import III, InvocationError
from tests.conformance.harness import sdk_worker
from tests.runtime.modules.stream.support import stream_client, stream_entry, stream_port
from tests.support.clocks import backend_clock
from tests.support.engine import StartEngine, worker_url
from tests.support.redis_server import redis_server
from tests.support.waiting import wait_until
from tests.support.ws import upgrade_status


def module(engine: Engine) -> Any:
    return engine.modules["stream"]


@pytest.fixture
def clock(adapter: str) -> trio.testing.MockClock | None:
    """For the tests parametrized over ``adapter``."""
    return backend_clock(adapter)


@pytest.fixture
async def engine(start_engine: StartEngine) -> Engine:
    return await start_engine(modules=(stream_entry(),))


@pytest.fixture
async def iii(engine: Engine) -> AsyncIterator[III]:
    async with III(worker_url(engine), worker_name="user").connect() as client:
        yield client


@pytest.mark.parametrize(
    "adapter", ["in_memory", "file_based", pytest.param("redis", marks=pytest.mark.slow)]
)
async def test_result_shapes_function_by_function(
    start_engine: StartEngine, tmp_path: Path, adapter: str, clock: trio.testing.MockClock | None
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        url = ""
        if adapter == "redis":
            url = await stack.enter_async_context(redis_server(tmp_path))
        engine = await start_engine(modules=(stream_entry(adapter, tmp_path / "s.db", url),))
        iii = await stack.enter_async_context(III(worker_url(engine), worker_name="u").connect())

        def at(item: str, group: str = "room-1") -> dict[str, Any]:
            return {"stream_name": "chat", "group_id": group, "item_id": item}

        set_ = "stream::set"
        assert await iii.trigger(set_, {**at("m1"), "data": {"text": "hi"}}) == {
            "old_value": None,
            "new_value": {"text": "hi"},
        }
        assert await iii.trigger(set_, {**at("m1"), "data": {"text": "yo"}}) == {
            "old_value": {"text": "hi"},
            "new_value": {"text": "yo"},
        }
        await iii.trigger(set_, {**at("m0"), "data": 0})
        await iii.trigger(set_, {**at("x", "room-0"), "data": None})
        await iii.trigger(
            set_, {"stream_name": "audit", "group_id": "g", "item_id": "a", "data": 1}
        )
        assert await iii.trigger("stream::get", at("m1")) == {"text": "yo"}
        assert await iii.trigger("stream::get", at("missing")) is None
        ops = [{"type": "increment", "path": "n", "by": 2}]
        assert await iii.trigger("stream::update", {**at("m2"), "ops": ops}) == {
            "old_value": None,
            "new_value": {"n": 2},
        }
        assert await iii.trigger("stream::update", {**at("m2"), "ops": ops}) == {
            "old_value": {"n": 2},
            "new_value": {"n": 4},
        }
        listed = await iii.trigger("stream::list", {"stream_name": "chat", "group_id": "room-1"})
        assert listed == [{"text": "yo"}, 0, {"n": 4}]  # insertion order
        assert await iii.trigger("stream::list", {"stream_name": "chat", "group_id": "no"}) == []
        groups = await iii.trigger("stream::list_groups", {"stream_name": "chat"})
        assert sorted(groups) == ["room-0", "room-1"]
        assert await iii.trigger("stream::list_all", {}) == {
            "stream": [
                {"id": "audit", "groups": ["g"]},
                {"id": "chat", "groups": ["room-0", "room-1"]},
            ],
            "count": 2,
        }
        assert await iii.trigger("stream::delete", at("m0")) == {"old_value": 0}
        assert await iii.trigger("stream::delete", at("m0")) == {"old_value": None}  # wrapped
        send = {"stream_name": "chat", "group_id": "room-1", "type": "typing", "data": {"u": 1}}
        assert await iii.trigger("stream::send", send) is None
        await iii.trigger("stream::delete", at("x", "room-0"))
        groups = await iii.trigger("stream::list_groups", {"stream_name": "chat"})
        assert groups == ["room-1"]  # an emptied group is gone
        counters = module(engine)
        await wait_until(
            lambda: counters.introspect()["items"] == 3, what="three items are counted"
        )
        expected = {"streams": 2, "groups": 2, "items": 3, "clients": 0, "subscriptions": 0}
        assert expected.items() <= counters.introspect().items()


@pytest.mark.parametrize(
    "adapter", ["in_memory", "file_based", pytest.param("redis", marks=pytest.mark.slow)]
)
async def test_merge_with_a_string_path_merges_under_that_key(
    start_engine: StartEngine, tmp_path: Path, adapter: str, clock: trio.testing.MockClock | None
) -> None:
    """Issue 16, item 15: ``path: "session-abc"`` merged ``{author, ts}`` at the root."""
    async with contextlib.AsyncExitStack() as stack:
        url = ""
        if adapter == "redis":
            url = await stack.enter_async_context(redis_server(tmp_path))
        engine = await start_engine(modules=(stream_entry(adapter, tmp_path / "s.db", url),))
        iii = await stack.enter_async_context(III(worker_url(engine), worker_name="u").connect())
        at = {"stream_name": "chat", "group_id": "room-1", "item_id": "m1"}
        await iii.trigger("stream::set", {**at, "data": {"owner": "u1"}})
        for value in ({"author": "a"}, {"ts": 1}):
            ops = [{"type": "merge", "path": "session-abc", "value": value}]
            await iii.trigger("stream::update", {**at, "ops": ops})
        expected = {"owner": "u1", "session-abc": {"author": "a", "ts": 1}}
        assert await iii.trigger("stream::get", at) == expected


@pytest.mark.parametrize(
    ("function_id", "data", "detail"),
    [
        (
            "stream::set",
            {"group_id": "g", "item_id": "i", "data": 1},
            "missing field `stream_name`",
        ),
        ("stream::set", {"stream_name": "s", "group_id": "g", "item_id": "i"}, "`data`"),
        (
            "stream::set",
            {"stream_name": "s", "group_id": 3, "item_id": "i", "data": 1},
            "`group_id`",
        ),
        ("stream::get", {"stream_name": "s", "group_id": "g"}, "missing field `item_id`"),
        ("stream::delete", None, "expected an object"),
        ("stream::update", {"stream_name": "s", "group_id": "g", "item_id": "i"}, "'ops'"),
        (
            "stream::update",
            {"stream_name": "s", "group_id": "g", "item_id": "i", "ops": [{"type": "nope"}]},
            "unknown op",
        ),
        ("stream::list", {"stream_name": "s"}, "missing field `group_id`"),
        ("stream::list_groups", {}, "missing field `stream_name`"),
        ("stream::list_all", None, "expected an object"),
        ("stream::send", {"stream_name": "s", "group_id": "g", "data": 1}, "missing field `type`"),
        (
            "stream::send",
            {"stream_name": "s", "group_id": "g", "type": "t", "id": 5, "data": 1},
            "`id`",
        ),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
    iii: III, function_id: str, data: Any, detail: str, autojump_clock: trio.testing.MockClock
) -> None:
    item = {"stream_name": "s", "group_id": "g", "item_id": "i"}
    await iii.trigger("stream::set", {**item, "data": {"n": 1}})
    with pytest.raises(InvocationError) as info:
        await iii.trigger(function_id, data)
    assert info.value.code == "deserialization_error"
    assert info.value.message.startswith(f"Failed to deserialize input for {function_id}: ")
    assert detail in info.value.message
    assert await iii.trigger("stream::get", item) == {"n": 1}
    assert await iii.trigger("stream::list_all", {}) == {
        "stream": [{"id": "s", "groups": ["g"]}],
        "count": 1,
    }


async def test_a_client_gets_the_sync_then_every_change_in_order(
    engine: Engine, iii: III, autojump_clock: trio.testing.MockClock
) -> None:
    def at(item: str) -> dict[str, Any]:
        return {"stream_name": "chat", "group_id": "room-1", "item_id": item}

    await iii.trigger("stream::set", {**at("a"), "data": {"n": 1}})
    await iii.trigger("stream::set", {**at("b"), "data": {"n": 2}})
    async with stream_client(stream_port(engine)) as client:
        await client.join("s-group", "chat", "room-1")
        first = await client.receive()
        assert first["type"] == "stream"
        assert (first["streamName"], first["groupId"], first["id"]) == ("chat", "room-1", None)
        assert first["event"] == {"type": "sync", "data": [{"n": 1}, {"n": 2}]}
        await client.join("s-item", "chat", "room-1", "a")
        assert await client.events(1) == [("a", {"type": "sync", "data": {"n": 1}})]

        await iii.trigger("stream::set", {**at("c"), "data": "new"})
        await iii.trigger(
            "stream::update", {**at("a"), "ops": [{"type": "set", "path": "n", "value": 9}]}
        )
        await iii.trigger("stream::delete", {**at("b")})
        await iii.trigger("stream::delete", {**at("never")})  # nothing there: no event
        send = {"stream_name": "chat", "group_id": "room-1", "type": "typing", "data": {"who": "x"}}
        await iii.trigger("stream::send", send)
        await iii.trigger("stream::send", {**send, "id": "a", "type": "poke"})
        await iii.trigger(
            "stream::set", {"stream_name": "chat", "group_id": "room-2", "item_id": "z", "data": 0}
        )
        await iii.trigger("stream::delete", {**at("a")})
        # Item "a" matches both subscriptions: each gets its own copy.
        assert await client.events(9) == [
            ("c", {"type": "create", "data": "new"}),
            ("a", {"type": "update", "data": {"n": 9}}),
            ("a", {"type": "update", "data": {"n": 9}}),
            ("b", {"type": "delete", "data": {"n": 2}}),
            (None, {"type": "event", "event": {"type": "typing", "data": {"who": "x"}}}),
            ("a", {"type": "event", "event": {"type": "poke", "data": {"who": "x"}}}),
            ("a", {"type": "event", "event": {"type": "poke", "data": {"who": "x"}}}),
            ("a", {"type": "delete", "data": {"n": 9}}),
            ("a", {"type": "delete", "data": {"n": 9}}),
        ]
        assert module(engine).introspect()["clients"] == 1
        assert module(engine).introspect()["subscriptions"] == 2
        await client.leave("s-item", "chat", "room-1", "a")
        await client.leave("s-group", "chat", "room-1")
        await wait_until(
            lambda: module(engine).introspect()["subscriptions"] == 0,
            what="no subscription is left",
        )
        await iii.trigger("stream::set", {**at("d"), "data": 1})
        await client.join("again", "chat", "room-2")
        # Nothing of room-1 arrived after the leave: the next message is room-2's sync.
        assert await client.events(1) == [(None, {"type": "sync", "data": [0]})]
    await wait_until(lambda: module(engine).introspect()["clients"] == 0, what="no client is left")
    assert await upgrade_status(stream_port(engine), "/other") == 404


async def test_join_bindings_auth_context_and_unauthorized(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(stream_entry(auth_function="auth::check"),))
    auth_inputs: list[Any] = []
    joins: list[Any] = []
    leaves: list[Any] = []
    watcher = III(worker_url(engine), worker_name="auth")

    @watcher.function(id="auth::check")
    async def check(data: dict[str, Any]) -> Any:
        auth_inputs.append(data)
        return {"context": {"user": data["query_params"]["user"][0]}}

    @watcher.function(id="auth::join")
    async def on_join(data: dict[str, Any]) -> Any:
        joins.append(data)
        return {"unauthorized": data["stream_name"] == "secret"}

    @watcher.function(id="auth::join_other")
    async def on_join_other(data: dict[str, Any]) -> Any:
        return None  # no opinion: the first binding's answer stands

    @watcher.function(id="auth::leave")
    async def on_leave(data: dict[str, Any]) -> None:
        leaves.append(data)

    watcher.register_trigger("stream:join", "auth::join", {})
    watcher.register_trigger("stream:join", "auth::join_other", {})
    watcher.register_trigger("stream:leave", "auth::leave", {})
    async with watcher.connect() as iii:
        await wait_until(
            lambda: module(engine).introspect()["leave_bindings"] == 1,
            what="the leave trigger is bound",
        )
        url_port = stream_port(engine)
        async with stream_client(url_port, "/?user=ann&user=bob&x=") as client:
            await client.join("s1", "secret", "g")
            assert await client.events(1) == [(None, {"type": "unauthorized"})]
            await iii.trigger(
                "stream::set", {"stream_name": "secret", "group_id": "g", "item_id": "i", "data": 1}
            )
            await client.join("s2", "open", "g", "i")
            # The secret change never arrived: the next message is the sync of s2.
            assert await client.events(1) == [("i", {"type": "sync", "data": None})]
            await client.leave("s2", "open", "g", "i")
            await wait_until(lambda: len(leaves) == 1, what="one leave is seen")
            await client.join("s3", "open", "g")
            assert await client.events(1) == [(None, {"type": "sync", "data": []})]
        await wait_until(lambda: len(leaves) == 2, what="the disconnect leaves s3")
    [auth] = auth_inputs
    assert auth["path"] == "/"
    assert auth["query_params"] == {"user": ["ann", "bob"], "x": [""]}
    assert auth["headers"]["upgrade"].lower() == "websocket"
    assert all(name == name.lower() for name in auth["headers"])
    assert auth["addr"].startswith("127.0.0.1:")
    context = {"user": "ann"}
    assert joins == [
        {
            "subscription_id": "s1",
            "stream_name": "secret",
            "group_id": "g",
            "id": None,
            "context": context,
        },
        {
            "subscription_id": "s2",
            "stream_name": "open",
            "group_id": "g",
            "id": "i",
            "context": context,
        },
        {
            "subscription_id": "s3",
            "stream_name": "open",
            "group_id": "g",
            "id": None,
            "context": context,
        },
    ]
    assert leaves == [
        {
            "subscription_id": "s2",
            "stream_name": "open",
            "group_id": "g",
            "id": "i",
            "context": context,
        },
        {
            "subscription_id": "s3",
            "stream_name": "open",
            "group_id": "g",
            "id": None,
            "context": context,
        },
    ]


async def test_stream_triggers_with_filters_and_condition(
    engine: Engine, iii: III, autojump_clock: trio.testing.MockClock
) -> None:
    seen: dict[str, list[Any]] = {"all": [], "group": [], "item": [], "cond": []}
    done = trio.Event()
    watcher = III(worker_url(engine), worker_name="watcher")

    def recorder(name: str) -> Any:
        async def record(event: dict[str, Any]) -> None:
            seen[name].append((event["groupId"], event["id"], event["event"]["type"]))
            if name == "all" and len(seen["all"]) == 5:
                done.set()

        return record

    for name in seen:
        watcher.register_function(f"w::{name}", recorder(name))

    @watcher.function(id="w::only_big")
    async def only_big(event: dict[str, Any]) -> bool:
        return (event["event"].get("data") or {}).get("n", 0) > 10

    watcher.register_trigger(
        "stream", "w::all", {"stream_name": "s", "group_id": "", "item_id": None}
    )
    watcher.register_trigger("stream", "w::group", {"stream_name": "s", "group_id": "g1"})
    watcher.register_trigger(
        "stream", "w::item", {"stream_name": "s", "group_id": "g1", "item_id": "i1"}
    )
    watcher.register_trigger(
        "stream", "w::cond", {"stream_name": "s", "condition_function_id": "w::only_big"}
    )
    refused = watcher.register_trigger("stream", "w::all", {"group_id": "g1"})  # no stream_name
    async with watcher.connect():
        await wait_until(
            lambda: len(module(engine).trigger.bindings) == 4, what="four stream triggers are bound"
        )
        at = {"stream_name": "s", "group_id": "g1", "item_id": "i1"}
        await iii.trigger("stream::set", {**at, "data": {"n": 1}})
        await iii.trigger("stream::set", {**at, "item_id": "i2", "data": {"n": 50}})
        await iii.trigger("stream::set", {**at, "group_id": "g2", "data": {"n": 2}})
        await iii.trigger("stream::set", {**at, "stream_name": "other", "data": {"n": 99}})
        await iii.trigger("stream::send", {**at, "type": "ping", "data": None})
        await iii.trigger("stream::delete", at)
        with trio.fail_after(10):
            await done.wait()
        await wait_until(
            lambda: len(seen["item"]) == 2 and len(seen["cond"]) == 1,
            what="two item events and one conditional event",
        )
    assert Counter(seen["all"]) == Counter(
        [
            ("g1", "i1", "create"),
            ("g1", "i2", "create"),
            ("g2", "i1", "create"),
            ("g1", None, "event"),
            ("g1", "i1", "delete"),
        ]
    )
    assert Counter(seen["group"]) == Counter(
        [
            ("g1", "i1", "create"),
            ("g1", "i2", "create"),
            ("g1", None, "event"),
            ("g1", "i1", "delete"),
        ]
    )
    assert Counter(seen["item"]) == Counter([("g1", "i1", "create"), ("g1", "i1", "delete")])
    assert seen["cond"] == [("g1", "i2", "create")]  # the condition let only n=50 through
    rows = (await iii.trigger("engine::triggers::list", {}))["triggers"]
    assert refused.id not in {row["id"] for row in rows}


async def test_per_stream_overrides_are_called_and_events_still_fire(
    engine: Engine, iii: III, autojump_clock: trio.testing.MockClock
) -> None:
    backing: dict[str, Any] = {}
    calls: list[tuple[str, Any]] = []
    provider = III(worker_url(engine), worker_name="custom")

    @provider.function(id="stream::set(custom)")
    async def custom_set(data: dict[str, Any]) -> Any:
        calls.append(("set", data))
        old = backing.get(data["item_id"])
        backing[data["item_id"]] = data["data"]
        return {"old_value": old, "new_value": data["data"]}

    @provider.function(id="stream::get(custom)")
    async def custom_get(data: dict[str, Any]) -> Any:
        calls.append(("get", data))
        return backing.get(data["item_id"])

    @provider.function(id="stream::list(custom)")
    async def custom_list(data: dict[str, Any]) -> Any:
        return list(backing.values())

    @provider.function(id="stream::list_groups(custom)")
    async def custom_groups(data: dict[str, Any]) -> Any:
        return ["virtual"]

    @provider.function(id="stream::delete(custom)")
    async def custom_delete(data: dict[str, Any]) -> Any:
        return {"old_value": backing.pop(data["item_id"], None)}

    @provider.function(id="stream::update(custom)")
    async def bad_update(data: dict[str, Any]) -> Any:
        return "not an update result"

    async with provider.connect():
        await wait_until(
            lambda: "stream::update(custom)" in engine.registry.functions,
            what="the custom update is registered",
        )
        async with stream_client(stream_port(engine)) as client:
            await client.join("s", "custom", "g")
            assert await client.events(1) == [(None, {"type": "sync", "data": []})]
            at = {"stream_name": "custom", "group_id": "g", "item_id": "k"}
            assert await iii.trigger("stream::set", {**at, "data": 7}) == {
                "old_value": None,
                "new_value": 7,
            }
            assert await iii.trigger("stream::get", at) == 7
            assert await iii.trigger(
                "stream::list", {"stream_name": "custom", "group_id": "g"}
            ) == [7]
            groups = await iii.trigger("stream::list_groups", {"stream_name": "custom"})
            assert groups == ["virtual"]
            assert await iii.trigger("stream::delete", at) == {"old_value": 7}
            with pytest.raises(InvocationError) as info:
                await iii.trigger("stream::update", {**at, "ops": []})
            assert info.value.code == "JSON_ERROR"
            assert await client.events(2) == [
                ("k", {"type": "create", "data": 7}),
                ("k", {"type": "delete", "data": 7}),
            ]
        # The module's own store never saw the overridden stream.
        assert await iii.trigger("stream::list_all", {}) == {"stream": [], "count": 0}
    assert calls[0] == (
        "set",
        {"stream_name": "custom", "group_id": "g", "item_id": "k", "data": 7},
    )


async def test_a_client_that_stops_reading_is_dropped(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(stream_entry(channel_size=4),))
    port = stream_port(engine)
    async with III(worker_url(engine), worker_name="w").connect() as iii:
        stalled = await trio.open_tcp_stream("127.0.0.1", port)
        try:
            # A real upgrade, a join, then never another read.
            await stalled.send_all(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += await stalled.receive_some(4096)
            assert answer.startswith(b"HTTP/1.1 101")
            join = b'{"type":"join","data":{"subscriptionId":"s","streamName":"big","groupId":"g"}}'
            mask = b"\x00\x00\x00\x00"
            await stalled.send_all(bytes([0x81, 0x80 | len(join)]) + mask + join)
            await wait_until(
                lambda: module(engine).introspect()["subscriptions"] == 1,
                what="one subscription is open",
            )
            async with III(worker_url(engine), worker_name="reader").connect():
                async with stream_client(port) as healthy:
                    await healthy.join("h", "big", "g")
                    await healthy.receive()  # its sync
                    blob = "x" * 200_000
                    n = 0
                    with trio.fail_after(60):
                        while module(engine).introspect()["clients_dropped"] == 0:
                            at = {"stream_name": "big", "group_id": "g", "item_id": str(n % 8)}
                            await iii.trigger("stream::set", {**at, "data": blob})
                            received = await healthy.receive()  # keeps up
                            assert received["event"]["data"] == blob
                            n += 1
                    assert module(engine).introspect()["clients"] == 1  # only the healthy one
        finally:
            await stalled.aclose()


@pytest.mark.slow  # an official SDK in its own process
@pytest.mark.parametrize("label", ["P25", "N22"])
async def test_result_shapes_through_an_official_sdk(
    start_engine: StartEngine, tmp_path: Path, label: str
) -> None:
    engine = await start_engine(modules=(stream_entry(),))
    async with sdk_worker(label, worker_url(engine), "official", tmp_path, bare=True) as sdk:

        async def call(function_id: str, data: Any) -> Any:
            reply = await sdk.call(function_id, data)
            assert reply["ok"], reply
            return reply.get("result")

        at = {"stream_name": "chat", "group_id": "g", "item_id": "m"}
        assert await call("stream::set", {**at, "data": {"t": 1}}) == {
            "old_value": None,
            "new_value": {"t": 1},
        }
        assert await call("stream::get", at) == {"t": 1}
        ops = [{"type": "increment", "path": "t", "by": 2}]
        assert await call("stream::update", {**at, "ops": ops}) == {
            "old_value": {"t": 1},
            "new_value": {"t": 3},
        }
        assert await call("stream::list", {"stream_name": "chat", "group_id": "g"}) == [{"t": 3}]
        assert await call("stream::list_groups", {"stream_name": "chat"}) == ["g"]
        assert await call("stream::list_all", {}) == {
            "stream": [{"id": "chat", "groups": ["g"]}],
            "count": 1,
        }
        send = {"stream_name": "chat", "group_id": "g", "type": "t", "data": 1}
        assert await call("stream::send", send) is None
        assert await call("stream::delete", at) == {"old_value": {"t": 3}}
        assert await call("stream::get", at) is None
        bad = await sdk.call("stream::set", {"stream_name": "chat"})
        assert not bad["ok"]
        assert bad["error"]["code"] == "deserialization_error"
