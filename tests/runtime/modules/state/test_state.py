"""StateModule through a real engine, called from trio-SDK workers (spec/modules.md §4)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.state import module as state_module
from iii_trio.runtime.modules.state.config import StateConfig
from iii_trio.runtime.modules.storage.config import KvStoreConfig, RedisAdapterConfig
from iii_trio.sdk import III, InvocationError
from tests.conformance.harness import sdk_worker
from tests.support.clocks import backend_clock
from tests.support.engine import StartEngine, worker_url
from tests.support.redis_server import redis_server
from tests.support.waiting import wait_until

# "redis" starts redis-server: slow.
ADAPTERS = ["in_memory", "file_based", pytest.param("redis", marks=pytest.mark.slow)]


def state_entry(store_method: str, path: Path, redis_url: str = "") -> ModuleEntry:
    adapter: KvStoreConfig | RedisAdapterConfig
    if store_method == "redis":
        adapter = RedisAdapterConfig(redis_url=redis_url)
    else:
        adapter = KvStoreConfig(store_method=store_method, file_path=str(path))  # type: ignore[arg-type]
    config = StateConfig(adapter=adapter)
    return ModuleEntry("state", "modules::state::StateModule", "modules[0]", config)


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def clock(adapter: str) -> trio.testing.MockClock | None:
    return backend_clock(adapter)


@pytest.fixture
async def engine(adapter: str, start_engine: StartEngine, tmp_path: Path) -> AsyncIterator[Engine]:
    async with contextlib.AsyncExitStack() as stack:
        url = ""
        if adapter == "redis":  # a real redis-server on a free port
            url = await stack.enter_async_context(redis_server(tmp_path))
        yield await start_engine(modules=(state_entry(adapter, tmp_path / "s.db", url),))


@pytest.fixture
async def iii(engine: Engine) -> AsyncIterator[III]:
    async with III(worker_url(engine), worker_name="user").connect() as client:
        yield client


async def test_set_get_delete_result_shapes(iii: III, clock: trio.testing.MockClock | None) -> None:
    first = await iii.trigger("state::set", {"scope": "orders", "key": "o1", "value": {"t": 5}})
    assert first == {"old_value": None, "new_value": {"t": 5}}
    second = await iii.trigger("state::set", {"scope": "orders", "key": "o1", "data": [1]})
    assert second == {"old_value": {"t": 5}, "new_value": [1]}  # `data` is an alias of `value`
    assert await iii.trigger("state::get", {"scope": "orders", "key": "o1"}) == [1]
    assert await iii.trigger("state::get", {"scope": "orders", "key": "nope"}) is None
    assert await iii.trigger("state::delete", {"scope": "orders", "key": "o1"}) == [1]
    assert await iii.trigger("state::delete", {"scope": "orders", "key": "o1"}) is None
    assert await iii.trigger("state::get", {"scope": "orders", "key": "o1"}) is None


async def test_list_and_list_groups(iii: III, clock: trio.testing.MockClock | None) -> None:
    for key, value in (("b", 2), ("a", 1), ("c", {"x": 3})):
        await iii.trigger("state::set", {"scope": "s1", "key": key, "value": value})
    await iii.trigger("state::set", {"scope": "s0", "key": "k", "value": None})
    await iii.trigger("state::set", {"scope": "s1", "key": "b", "value": 22})  # keeps its place
    assert await iii.trigger("state::list", {"scope": "s1"}) == [22, 1, {"x": 3}]
    assert await iii.trigger("state::list", {"scope": "unknown"}) == []
    assert await iii.trigger("state::list_groups", {}) == {"groups": ["s0", "s1"]}
    await iii.trigger("state::delete", {"scope": "s0", "key": "k"})
    assert await iii.trigger("state::list_groups", {}) == {"groups": ["s1"]}  # emptied: gone


async def test_update_applies_every_op_and_reports_both_values(
    iii: III, clock: trio.testing.MockClock | None
) -> None:
    ops = [{"type": "set", "path": "n", "value": 1}, {"type": "increment", "path": "n", "by": 4}]
    created = await iii.trigger("state::update", {"scope": "c", "key": "k", "ops": ops})
    assert created == {"old_value": None, "new_value": {"n": 5}}
    # agentos sends `operations` and increments with `value`.
    aliased = [{"type": "increment", "path": "n", "value": 1}]
    updated = await iii.trigger("state::update", {"scope": "c", "key": "k", "operations": aliased})
    assert updated == {"old_value": {"n": 5}, "new_value": {"n": 6}}


@pytest.mark.parametrize(
    ("function_id", "data", "detail"),
    [
        ("state::set", {"key": "k", "value": 1}, "missing field `scope`"),
        ("state::get", {"scope": "s"}, "missing field `key`"),
        ("state::set", {"scope": "s", "key": "k"}, "missing field `value`"),
        ("state::delete", {"scope": 1, "key": "k"}, "`scope` must be a string"),
        ("state::list", None, "expected an object"),
        ("state::update", {"scope": "s", "key": "k", "ops": [{"type": "nope"}]}, "unknown op"),
        ("state::update", {"scope": "s", "key": "k"}, "'ops' must be a list"),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
    iii: III, function_id: str, data: Any, detail: str, clock: trio.testing.MockClock | None
) -> None:
    await iii.trigger("state::set", {"scope": "s", "key": "k", "value": {"n": 1}})
    with pytest.raises(InvocationError) as info:
        await iii.trigger(function_id, data)
    assert info.value.code == "deserialization_error"
    assert info.value.message.startswith(f"Failed to deserialize input for {function_id}: ")
    assert detail in info.value.message
    assert await iii.trigger("state::get", {"scope": "s", "key": "k"}) == {"n": 1}
    assert await iii.trigger("state::list_groups", {}) == {"groups": ["s"]}


async def test_ops_that_need_an_object_leave_a_non_object_value_as_it_is(
    iii: III, clock: trio.testing.MockClock | None
) -> None:
    await iii.trigger("state::set", {"scope": "s", "key": "n", "value": 5})
    ops = [
        {"type": "set", "path": "a", "value": 1},
        {"type": "increment", "path": "a", "by": 1},
        {"type": "remove", "path": "a"},
        {"type": "merge", "path": "", "value": {"b": 2}},
    ]
    result = await iii.trigger("state::update", {"scope": "s", "key": "n", "ops": ops})
    assert result == {"old_value": 5, "new_value": 5}
    assert await iii.trigger("state::get", {"scope": "s", "key": "n"}) == 5


async def test_merge_with_a_string_path_merges_under_that_key(
    iii: III, clock: trio.testing.MockClock | None
) -> None:
    """Issue 16, item 15: ``path: "session-abc"`` merged ``{author, ts}`` at the root."""
    at = {"scope": "sessions", "key": "k"}
    await iii.trigger("state::set", {**at, "value": {"owner": "u1"}})
    for value in ({"author": "a"}, {"ts": 1}):
        ops = [{"type": "merge", "path": "session-abc", "value": value}]
        await iii.trigger("state::update", {**at, "ops": ops})
    expected = {"owner": "u1", "session-abc": {"author": "a", "ts": 1}}
    assert await iii.trigger("state::get", at) == expected


async def increment_concurrently(engines: list[Engine], workers: int, times: int) -> Any:
    """``workers`` workers, spread over ``engines``, each incrementing one counter ``times``
    times; the counter's value afterwards."""

    async def worker(engine: Engine, n: int) -> None:
        async with III(worker_url(engine), worker_name=f"w{n}").connect() as client:
            op = {"type": "increment", "path": "count", "by": 1}
            for _ in range(times):
                await client.trigger("state::update", {"scope": "c", "key": "k", "ops": [op]})

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for n in range(workers):
                nursery.start_soon(worker, engines[n % len(engines)], n)
    async with III(worker_url(engines[-1]), worker_name="reader").connect() as client:
        return await client.trigger("state::get", {"scope": "c", "key": "k"})


async def test_concurrent_increments_from_64_workers_are_never_lost(
    engine: Engine, clock: trio.testing.MockClock | None
) -> None:
    assert await increment_concurrently([engine], workers=64, times=100) == {"count": 6400}


async def test_introspection_counts_scopes_and_keys(
    engine: Engine, iii: III, monkeypatch: pytest.MonkeyPatch, clock: trio.testing.MockClock | None
) -> None:
    """Memory counts at once; SQLite and Redis are recounted in the background after writes
    (within COUNTS_REFRESH_SECONDS, set to 0 here so the test waits only for the recount)."""
    monkeypatch.setattr(state_module, "COUNTS_REFRESH_SECONDS", 0)
    for scope, key in (("a", "1"), ("a", "2"), ("b", "1")):
        await iii.trigger("state::set", {"scope": scope, "key": key, "value": 0})
    await iii.trigger("state::delete", {"scope": "b", "key": "1"})

    async def counts() -> tuple[int, int]:
        rows = (await iii.trigger("engine::modules::list", {}))["modules"]
        [status] = [row["status"] for row in rows if row["name"] == "state"]
        return status["scopes"], status["keys"]

    async def counted() -> bool:
        return await counts() == (1, 2)

    await wait_until(counted, what="one scope and two keys are counted")


async def test_the_state_trigger_fires_after_each_write(
    engine: Engine, iii: III, clock: trio.testing.MockClock | None
) -> None:
    events: list[dict[str, Any]] = []
    plain: list[dict[str, Any]] = []
    seen = trio.Event()
    watcher = III(worker_url(engine), worker_name="watcher")

    @watcher.function(id="watch::orders")
    async def on_change(event: dict[str, Any]) -> None:
        plain.append(event)
        if len(plain) == 3:
            seen.set()

    @watcher.function(id="watch::only_big")
    async def only_big(event: dict[str, Any]) -> bool:
        return bool((event["new_value"] or {}).get("total", 0) > 100)

    @watcher.function(id="watch::big")
    async def on_big(event: dict[str, Any]) -> None:
        events.append({"big": event["key"]})

    watcher.register_trigger("state", "watch::orders", {"scope": "orders"})
    watcher.register_trigger(
        "state", "watch::big", {"scope": "orders", "condition_function_id": "watch::only_big"}
    )
    async with watcher.connect():
        await wait_until(
            lambda: len(engine.modules["state"].trigger.bindings) >= 2,  # type: ignore[attr-defined]
            what="both state triggers are bound",
        )
        await iii.trigger("state::set", {"scope": "orders", "key": "o1", "value": {"total": 5}})
        await iii.trigger("state::set", {"scope": "other", "key": "o1", "value": 1})  # no match
        ops = [{"type": "set", "path": "total", "value": 500}]
        await iii.trigger("state::update", {"scope": "orders", "key": "o1", "ops": ops})
        await iii.trigger("state::delete", {"scope": "orders", "key": "never-set"})
        with trio.fail_after(10):
            await seen.wait()
        await wait_until(lambda: {"big": "o1"} in events, what="watch::big sees o1")
    assert sorted(plain, key=lambda e: e["event_type"]) == [
        {
            "type": "state",
            "event_type": "state:created",
            "scope": "orders",
            "key": "o1",
            "old_value": None,
            "new_value": {"total": 5},
        },
        {
            "type": "state",
            "event_type": "state:deleted",
            "scope": "orders",
            "key": "never-set",
            "old_value": None,
            "new_value": None,
        },
        {
            "type": "state",
            "event_type": "state:updated",
            "scope": "orders",
            "key": "o1",
            "old_value": {"total": 5},
            "new_value": {"total": 500},
        },
    ]
    assert events == [{"big": "o1"}]  # the condition let only the 500 through


async def test_a_bad_trigger_config_is_refused(
    engine: Engine, clock: trio.testing.MockClock | None
) -> None:
    binding_ids: list[str] = []
    async with III(worker_url(engine), worker_name="w").connect() as client:
        handle = client.register_trigger("state", "w::fn", {"scope": 5})
        binding_ids.append(handle.id)

        async def unlisted() -> bool:
            rows = (await client.trigger("engine::triggers::list", {}))["triggers"]
            return handle.id not in {row["id"] for row in rows}

        await wait_until(unlisted, what="the trigger is no longer listed", timeout=5)
    assert engine.modules["state"].trigger.bindings == []  # type: ignore[attr-defined]


@pytest.mark.slow  # an official SDK in its own process
@pytest.mark.parametrize("label", ["P25", "N22"])
async def test_result_shapes_through_an_official_sdk(
    start_engine: StartEngine, tmp_path: Path, label: str
) -> None:
    engine = await start_engine(modules=(state_entry("file_based", tmp_path / "s.db"),))
    async with sdk_worker(label, worker_url(engine), "official", tmp_path, bare=True) as sdk:

        async def call(function_id: str, data: Any) -> Any:
            reply = await sdk.call(function_id, data)
            assert reply["ok"], reply
            return reply["result"]

        assert await call("state::set", {"scope": "o", "key": "k", "value": {"t": 1}}) == {
            "old_value": None,
            "new_value": {"t": 1},
        }
        assert await call("state::get", {"scope": "o", "key": "k"}) == {"t": 1}
        ops = [{"type": "increment", "path": "t", "by": 2}]
        assert await call("state::update", {"scope": "o", "key": "k", "ops": ops}) == {
            "old_value": {"t": 1},
            "new_value": {"t": 3},
        }
        assert await call("state::list", {"scope": "o"}) == [{"t": 3}]
        assert await call("state::list_groups", {}) == {"groups": ["o"]}
        assert await call("state::delete", {"scope": "o", "key": "k"}) == {"t": 3}
        assert await call("state::get", {"scope": "o", "key": "k"}) is None
        bad = await sdk.call("state::set", {"key": "k"})
        assert not bad["ok"]
        assert bad["error"]["code"] == "deserialization_error"


@pytest.mark.slow  # starts redis-server
async def test_two_engines_on_one_redis_never_lose_an_increment(
    start_engine: StartEngine, tmp_path: Path
) -> None:
    """Each engine applies updates itself; the compare-and-set write makes an update that
    raced with the other engine's read again instead of overwriting it."""
    async with redis_server(tmp_path) as url:
        engines = [await start_engine(modules=(state_entry("redis", tmp_path, url),)) for _ in "ab"]
        assert await increment_concurrently(engines, workers=32, times=50) == {"count": 1600}


@pytest.mark.slow  # starts redis-server
async def test_a_lost_redis_answers_error_codes_until_it_is_back(
    start_engine: StartEngine, tmp_path: Path
) -> None:
    async with redis_server(tmp_path) as url:
        engine = await start_engine(modules=(state_entry("redis", tmp_path, url),))
        async with III(worker_url(engine)).connect() as client:
            await client.trigger("state::set", {"scope": "s", "key": "k", "value": 1})
    # The redis-server has stopped; the engine runs on and answers every call with an error.
    async with III(worker_url(engine)).connect() as caller:
        for function_id, data, code in (
            ("state::set", {"scope": "s", "key": "k", "value": 2}, "SET_ERROR"),
            ("state::get", {"scope": "s", "key": "k"}, "GET_ERROR"),
            ("state::update", {"scope": "s", "key": "k", "ops": []}, "UPDATE_ERROR"),
            ("state::list_groups", {}, "LIST_GROUPS_ERROR"),
        ):
            with pytest.raises(InvocationError) as info:
                await caller.trigger(function_id, data)
            assert info.value.code == code
            assert info.value.message.startswith(f"Failed to {code[:-6].lower()}: ")

        async with redis_server(tmp_path, port=int(url.rsplit(":", 1)[1])):  # back, empty
            codes = []

            async def stored() -> bool:
                try:
                    await caller.trigger("state::set", {"scope": "s", "key": "k", "value": 3})
                except InvocationError as exc:
                    codes.append(exc.code)
                    return False
                return True

            # The module reconnects within a second.
            await wait_until(stored, what="state::set works again", interval=0.05)
            assert set(codes) <= {"SET_ERROR"}
            assert await caller.trigger("state::get", {"scope": "s", "key": "k"}) == 3
