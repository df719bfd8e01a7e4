"""One JSON policy over HTTP (issue 16, items 1 and 3): what the engine accepts it can always
write back. A body deeper than ``MAX_JSON_DEPTH`` is answered 400 ``invalid_payload`` when it
is decoded, before any function is called; one at the limit goes through and comes back;
a result that cannot be written back is a 500, not a failure of the module."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio
import trio.testing

from iii_trio.runtime.builtins.config import TelemetryConfig
from iii_trio.runtime.calls.invocation import CallContext, LocalHandler
from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.base import EngineModule
from iii_trio.runtime.wire.protocol import MAX_JSON_DEPTH, PayloadRejected, loads
from iii_trio.sdk import III
from tests.runtime.modules.rest_api.support import client, http_entry, routed
from tests.support.engine import StartEngine, worker_url
from tests.support.fake_module import extra_kinds
from tests.support.raw_worker import raw_worker

JSON = {"content-type": "application/json"}


def nested(depth: int) -> bytes:
    """``depth`` levels: arrays and objects in turn, a number at the bottom."""
    opening = "".join('{"a":' if level % 2 else "[" for level in range(depth))
    closing = "".join("}" if level % 2 else "]" for level in reversed(range(depth)))
    return f"{opening}1{closing}".encode()


def test_the_limit_is_what_orjson_can_write_back_with_room_for_envelopes() -> None:
    assert loads(nested(MAX_JSON_DEPTH)) is not None
    for depth in (MAX_JSON_DEPTH + 1, 300, 1024, 5000):  # 5000: deeper than orjson reads
        with pytest.raises(PayloadRejected):
            loads(nested(depth))
    # Brackets in strings do not count; many shallow values are not deep.
    assert loads(b'["' + b"[{" * 500 + b'"]') == ["[{" * 500]
    assert len(loads(b"[" + b"{}," * 10_000 + b"{}]")) == 10_001
    accepted = orjson.loads(nested(MAX_JSON_DEPTH))
    wrapped: Any = accepted
    for _ in range(8):  # an invoke frame, the HTTP input, a stored row... all fit
        wrapped = {"data": wrapped}
    assert orjson.loads(orjson.dumps(wrapped)) == wrapped


@pytest.fixture
async def engine(start_engine: StartEngine) -> Engine:
    return await start_engine(modules=(http_entry(),))


async def test_one_json_policy_a_body_past_the_depth_limit_is_400_before_any_call(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    worker = III(worker_url(engine), worker_name="api")
    bodies: list[Any] = []

    async def echo(request: dict[str, Any]) -> Any:
        bodies.append(request["body"])
        return {"body": request["body"]}

    worker.register_function("api::echo", echo)
    worker.register_trigger("http", "api::echo", {"api_path": "echo", "http_method": "POST"})
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)
        for depth in (MAX_JSON_DEPTH + 1, 300, 2000):  # 300: the issue's, 2000: orjson's own
            response = await http.post("/echo", content=nested(depth), headers=JSON)
            assert response.status_code == 400
            error = response.json()["error"]
            assert error["code"] == "invalid_payload"
            assert str(MAX_JSON_DEPTH) in error["message"]
        assert bodies == []  # nothing was called
        at_the_limit = await http.post("/echo", content=nested(MAX_JSON_DEPTH), headers=JSON)
        assert at_the_limit.status_code == 200
        assert at_the_limit.json() == orjson.loads(nested(MAX_JSON_DEPTH))  # written back
        # The module served all of it without a restart.
        actors = (await worker.trigger("engine::actors::list", {}))["actors"]
        [row] = [a for a in actors if a["name"] == "rest_api"]
        assert row["restarts"] == 0


async def test_one_json_policy_a_result_too_deep_to_write_back_is_a_500(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    """A raw worker answers with a result deeper than any encoder writes back."""
    async with raw_worker(worker_url(engine)) as worker, client(engine) as http:
        await worker.register("raw::deep")
        await worker.send(
            {
                "type": "registertrigger",
                "id": "t-deep",
                "trigger_type": "http",
                "function_id": "raw::deep",
                "config": {"api_path": "deep"},
            }
        )
        await routed(engine, 1)
        async with trio.open_nursery() as nursery:
            answers: list[Any] = []

            async def get() -> None:
                answers.append(await http.get("/deep"))

            nursery.start_soon(get)
            invoke = await worker.expect("invokefunction")
            result = orjson.dumps(
                {"type": "invocationresult", "invocation_id": invoke["invocation_id"]}
            )
            deep_body = b"[" * 300 + b"]" * 300  # no encoder writes this: spliced in as bytes
            await worker.send_raw(
                (result[:-1] + b',"result":{"body":' + deep_body + b"}}").decode()
            )
        [response] = answers
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "invalid_payload"
        assert (await http.get("/deep/nope")).status_code == 404  # still serving


class UnwritableResults(EngineModule):
    """An in-engine function whose result holds a Python value that is not JSON."""

    def functions(self) -> dict[str, tuple[LocalHandler, str]]:
        async def unwritable(data: Any, ctx: CallContext) -> Any:
            return {"status_code": 200, "body": {"a set": {1, 2}}}

        return {"test::unwritable": (unwritable, "answers with a set")}


async def test_one_json_policy_a_result_that_is_not_json_is_a_500(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    kinds = extra_kinds("unwritable_for_test", lambda ctx, entry: UnwritableResults(ctx))
    unwritable = ModuleEntry("unwritable_for_test", "test", "modules[1]", TelemetryConfig())
    engine = await start_engine(modules=(http_entry(), unwritable), kinds=kinds)
    worker = III(worker_url(engine), worker_name="api")
    worker.register_trigger("http", "test::unwritable", {"api_path": "unwritable"})
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)
        response = await http.get("/unwritable")
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "invalid_payload"
        assert (await http.get("/unwritable")).status_code == 500  # the module still serves
