"""Trigger types provided by workers and by the engine (spec §5.7, §6)."""

from __future__ import annotations

import trio
import trio.testing

from iii_trio.runtime.calls.errors import TriggerConfigError
from iii_trio.runtime.calls.registry import Binding, Registry
from iii_trio.runtime.calls.triggers import Triggers
from iii_trio.runtime.engine import Engine
from tests.support.engine import worker_url
from tests.support.raw_worker import RawWorker, raw_worker

BINDING = {
    "type": "registertrigger",
    "id": "fa84e72f-0c51-4b59-9d3e-2a0c8f6f3a10",
    "trigger_type": "ntype",
    "function_id": "p::echo",
    "config": {"topic": "t1"},
    "message_type": "registertrigger",
}


async def provide(worker: RawWorker, type_id: str = "ntype") -> None:
    await worker.send({"type": "registertriggertype", "id": type_id, "description": "custom"})


async def test_binding_reaches_the_provider_and_its_unregister_follows(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as provider, raw_worker(worker_url(engine)) as owner:
        await provide(provider)
        await trio.testing.wait_all_tasks_blocked()
        await owner.send(BINDING)
        delivered = await provider.expect("registertrigger")
        assert delivered == {
            "type": "registertrigger",
            "id": BINDING["id"],
            "trigger_type": "ntype",
            "function_id": "p::echo",
            "config": {"topic": "t1"},
        }
        await provider.send(
            {
                "type": "triggerregistrationresult",
                "id": BINDING["id"],
                "trigger_type": "ntype",
                "function_id": "p::echo",
            }
        )
        listed = await owner.call("engine::triggers::list", {})
        assert [t["id"] for t in listed["result"]["triggers"]] == [BINDING["id"]]
        await owner.send(
            {"type": "unregistertrigger", "id": BINDING["id"], "trigger_type": "ntype"}
        )
        assert await provider.expect("unregistertrigger") == {
            "type": "unregistertrigger",
            "id": BINDING["id"],
            "trigger_type": "ntype",
        }


async def test_binding_is_parked_until_a_provider_appears(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as owner:
        await owner.send(BINDING)
        listed = await owner.call("engine::triggers::list", {})
        assert len(listed["result"]["triggers"]) == 1  # parked bindings are listed
        async with raw_worker(worker_url(engine)) as provider:
            await provide(provider)
            delivered = await provider.expect("registertrigger")
            assert delivered["config"] == {"topic": "t1"}


async def test_provider_disconnect_reparks_for_the_next_provider(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as owner:
        async with raw_worker(worker_url(engine)) as first:
            await provide(first)
            await trio.testing.wait_all_tasks_blocked()
            await owner.send(BINDING)
            await first.expect("registertrigger")
        async with raw_worker(worker_url(engine)) as second:
            await provide(second)
            assert (await second.expect("registertrigger"))["id"] == BINDING["id"]


async def test_only_the_first_provider_gets_bindings_others_stand_by(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as owner, raw_worker(worker_url(engine)) as active:
        await provide(active)
        async with raw_worker(worker_url(engine)) as standby:
            await provide(standby)
            await trio.testing.wait_all_tasks_blocked()
            await owner.send(BINDING)
            await active.expect("registertrigger")
            with trio.move_on_after(0.2):
                frame = await standby.recv()
                raise AssertionError(f"standby received {frame}")


async def test_unregistertriggertype_moves_bindings_to_the_standby(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as owner, raw_worker(worker_url(engine)) as first:
        await provide(first)
        async with raw_worker(worker_url(engine)) as second:
            await provide(second)
            await trio.testing.wait_all_tasks_blocked()
            await owner.send(BINDING)
            await first.expect("registertrigger")
            await first.send({"type": "unregistertriggertype", "id": "ntype"})
            assert (await second.expect("registertrigger"))["id"] == BINDING["id"]


async def test_owner_disconnect_unregisters_at_the_provider(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as provider:
        await provide(provider)
        async with raw_worker(worker_url(engine)) as owner:
            await trio.testing.wait_all_tasks_blocked()
            await owner.send(BINDING)
            await provider.expect("registertrigger")
        gone = await provider.expect("unregistertrigger")
        assert gone["id"] == BINDING["id"]
        assert (await provider.call("engine::triggers::list", {}))["result"]["triggers"] == []


async def test_provider_refusal_reaches_the_owner_and_parks(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    error = {"code": "trigger_registration_failed", "message": "bad topic"}
    async with raw_worker(worker_url(engine)) as provider, raw_worker(worker_url(engine)) as owner:
        await provide(provider)
        await trio.testing.wait_all_tasks_blocked()
        await owner.send(BINDING)
        await provider.expect("registertrigger")
        await provider.send(
            {
                "type": "triggerregistrationresult",
                "id": BINDING["id"],
                "trigger_type": "ntype",
                "function_id": "p::echo",
                "error": error,
            }
        )
        failure = await owner.expect("triggerregistrationresult")
        assert failure["error"] == error
        assert failure["id"] == BINDING["id"]
        # Not re-sent to the provider that refused it, but a new provider gets it.
        await provider.send({"type": "registertriggertype", "id": "ntype", "description": "again"})
        with trio.move_on_after(0.2):
            frame = await provider.recv()
            raise AssertionError(f"refused binding re-sent: {frame}")
        async with raw_worker(worker_url(engine)) as other:
            await provide(other)
            assert (await other.expect("registertrigger"))["id"] == BINDING["id"]


async def test_same_trigger_id_from_two_connections_are_two_bindings(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as provider, raw_worker(worker_url(engine)) as old:
        await provide(provider)
        async with raw_worker(worker_url(engine)) as new:
            await trio.testing.wait_all_tasks_blocked()
            await old.send(BINDING)
            await new.send(BINDING)
            await provider.expect("registertrigger")
            await provider.expect("registertrigger")
        # The replayed binding's connection left; the old one's binding stays.
        await provider.expect("unregistertrigger")
        assert len((await old.call("engine::triggers::list", {}))["result"]["triggers"]) == 1


async def test_workers_cannot_provide_engine_types(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as sneaky, raw_worker(worker_url(engine)) as owner:
        await provide(sneaky, "engine::workers-available")
        await owner.register("w::events")
        await owner.send(
            {
                **BINDING,
                "trigger_type": "engine::workers-available",
                "function_id": "w::events",
                "config": {},
            }
        )
        await trio.testing.wait_all_tasks_blocked()
        async with raw_worker(worker_url(engine)) as newcomer:
            event = await owner.expect("invokefunction")
            assert event["data"] == {"event": "worker_connected", "worker_id": newcomer.worker_id}
        with trio.move_on_after(0.2):
            frame = await sneaky.recv()
            raise AssertionError(f"a worker received an engine type's binding: {frame}")


async def test_workers_available_reports_connect_metadata_and_disconnect(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as watcher:
        await watcher.register("w::events")
        await watcher.send(
            {
                **BINDING,
                "trigger_type": "engine::workers-available",
                "function_id": "w::events",
                "config": {},
            }
        )
        await trio.testing.wait_all_tasks_blocked()
        events = []
        async with raw_worker(worker_url(engine)) as other:
            await other.send(
                {
                    "type": "invokefunction",
                    "function_id": "engine::workers::register",
                    "data": {"name": "w2", "runtime": "python"},
                    "action": {"type": "void"},
                }
            )
            for _ in range(2):
                invoke = await watcher.expect("invokefunction")
                events.append(invoke["data"])
                await watcher.answer(invoke, None)
            other_id = other.worker_id
        invoke = await watcher.expect("invokefunction")
        events.append(invoke["data"])
    assert events == [
        {"event": "worker_connected", "worker_id": other_id},
        {"event": "worker_metadata_updated", "worker_id": other_id},
        {"event": "worker_disconnected", "worker_id": other_id},
    ]


async def test_functions_available_fires_with_the_new_list(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as watcher:
        await watcher.register("iii.on_functions_available.1")
        await watcher.send(
            {
                **BINDING,
                "trigger_type": "engine::functions-available",
                "function_id": "iii.on_functions_available.1",
                "config": {},
            }
        )
        await trio.testing.wait_all_tasks_blocked()
        async with raw_worker(worker_url(engine)) as late:
            await late.register("late::fn")
            with trio.fail_after(5):  # spec: within 5 s
                invoke = await watcher.expect("invokefunction")
    assert invoke["data"]["event"] == "functions_changed"
    assert "late::fn" in [row["function_id"] for row in invoke["data"]["functions"]]


class Incarnation:
    """An engine trigger type as a module incarnation offers it: records its bindings and
    refuses configs it cannot take (``TriggerConfigError``) or fails on a faulty one."""

    id = "kind"
    description = "a module's trigger type"

    def __init__(self) -> None:
        self.bound: list[str] = []

    def bind(self, binding: Binding) -> None:
        if binding.config.get("refuse"):
            raise TriggerConfigError("refused by this incarnation")
        if binding.config.get("fault"):
            raise KeyError("a bug in bind")
        self.bound.append(binding.id)

    def unbind(self, binding: Binding) -> None:
        self.bound.remove(binding.id)


def test_each_incarnation_of_an_engine_type_gets_every_binding_of_it() -> None:
    """Issue 16, item 2: a restarted module's trigger types came back empty."""
    registry = Registry()
    triggers = Triggers(registry)
    first = Incarnation()
    with triggers.hosting([first]):
        triggers.bind(Binding(None, "a", "kind", "f", {}))
    assert first.bound == ["a"]
    assert [b.id for b in registry.parked("kind")] == ["a"]  # kept while no incarnation runs
    triggers.bind(Binding(None, "b", "kind", "f", {}))  # made while the module is down
    triggers.bind(Binding(None, "bad", "kind", "f", {"refuse": True}))
    triggers.bind(Binding(None, "faulty", "kind", "f", {"fault": True}))
    triggers.bind(Binding(None, "other", "elsewhere", "f", {}))
    second = Incarnation()
    with triggers.hosting([second]):
        assert second.bound == ["a", "b"]
        # Refusals leave the registry (an owner hears of them); other types are untouched.
        assert sorted(b.id for b in registry.bindings.values()) == ["a", "b", "other"]
        triggers.bind(Binding(None, "c", "kind", "f", {}))
    assert second.bound == ["a", "b", "c"]
    assert first.bound == ["a"]  # the old incarnation is never handed the new ones
