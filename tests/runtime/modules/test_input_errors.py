"""Every engine function's and trigger type's input refusals, word for word, through a real
engine and a raw worker (spec/modules.md §2.1: ``Failed to deserialize input for <id>:
<detail>``).

The tables were taken from the hand-written checks before the inputs were declared as
classes (runtime/calls/inputs.py) and pin what callers see: each distinct message of each
function, every function's answer to ``null`` and to a non-object, the inputs with two
faults (the first field in order names the error), and inputs that are accepted (``null``
as an absent key, the aliases, the listings' any-input). ``test_inputs_stricter_*`` are the
few inputs refused since, each noted with what it did before.
"""

from __future__ import annotations

from typing import Any

import pytest

from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.cron.config import CronConfig
from iii_trio.runtime.modules.observability.config import OtelConfig
from iii_trio.runtime.modules.pubsub.config import LocalPubSubConfig, PubSubConfig
from iii_trio.runtime.modules.queue.config import QueueConfig
from iii_trio.runtime.modules.rest_api.config import RestApiConfig
from iii_trio.runtime.modules.state.config import StateConfig
from iii_trio.runtime.modules.stream.config import StreamConfig
from tests.support.engine import StartEngine, worker_url
from tests.support.raw_worker import RawWorker, raw_worker


def state_ops(ops: Any) -> dict[str, Any]:
    return {"scope": "s", "key": "k", "ops": ops}


def stream_ops(ops: Any) -> dict[str, Any]:
    return {"stream_name": "s", "group_id": "g", "item_id": "i", "ops": ops}


#: (function, input, the detail of its ``deserialization_error``, or (code, message)).
REFUSED: list[tuple[str, Any, Any]] = [
    ("engine::workers::register", None, "expected an object"),
    ("engine::functions::list", {"include_internal": 1}, "'include_internal' must be a boolean"),
    ("engine::triggers::list", {"include_internal": 1}, "'include_internal' must be a boolean"),
    ("engine::channels::create", {"buffer_size": True}, "'buffer_size' must be an integer"),
    ("engine::invocations::get", None, "expected an object"),
    ("engine::invocations::get", {}, "missing field 'id'"),
    (
        "engine::invocations::get",
        {"id": "nope"},
        ("invocation_not_found", "Invocation nope not found"),
    ),
    ("state::get", None, "expected an object"),
    ("state::get", {}, "missing field `scope`"),
    ("state::get", {"scope": "s"}, "missing field `key`"),
    ("state::get", {"scope": 1, "key": "k"}, "`scope` must be a string"),
    ("state::get", {"scope": "s", "key": 1}, "`key` must be a string"),
    ("state::get", {"scope": 1, "key": None}, "`scope` must be a string"),
    ("state::delete", None, "expected an object"),
    ("state::delete", {}, "missing field `scope`"),
    ("state::delete", {"scope": "s"}, "missing field `key`"),
    ("state::delete", {"scope": 1, "key": "k"}, "`scope` must be a string"),
    ("state::delete", {"scope": "s", "key": 1}, "`key` must be a string"),
    ("state::set", None, "expected an object"),
    ("state::set", {"key": "k", "value": 1}, "missing field `scope`"),
    ("state::set", {"scope": "s", "key": "k"}, "missing field `value`"),
    ("state::set", {"scope": "s", "value": 1}, "missing field `key`"),
    ("state::set", {"scope": 1, "key": "k"}, "`scope` must be a string"),
    ("state::set", {"scope": "s", "key": ["k"], "value": 1}, "`key` must be a string"),
    ("state::list", None, "expected an object"),
    ("state::list", {}, "missing field `scope`"),
    ("state::list", {"scope": 2}, "`scope` must be a string"),
    ("state::update", state_ops(None), "'ops' must be a list of operations"),
    ("state::update", state_ops([1]), "each op must be an object"),
    (
        "state::update",
        state_ops([{"type": "nope"}]),
        "unknown op type 'nope' (known: set, merge, increment, decrement, remove, append)",
    ),
    (
        "state::update",
        state_ops([{}]),
        "unknown op type None (known: set, merge, increment, decrement, remove, append)",
    ),
    (
        "state::update",
        state_ops([{"type": 3}]),
        "unknown op type 3 (known: set, merge, increment, decrement, remove, append)",
    ),
    (
        "state::update",
        state_ops([{"type": "increment", "path": "n", "by": 1.5}]),
        "'increment' needs an integer 'by'",
    ),
    (
        "state::update",
        state_ops([{"type": "increment", "path": "n", "by": None, "value": 2}]),
        "'increment' needs an integer 'by'",
    ),
    (
        "state::update",
        state_ops([{"type": "decrement", "path": "n", "by": "1"}]),
        "'decrement' needs an integer 'by'",
    ),
    (
        "state::update",
        state_ops([{"type": "increment", "path": 3}]),
        "'increment' needs an integer 'by'",
    ),
    (
        "state::update",
        state_ops([{"type": "increment", "path": ["a"], "by": 1}]),
        "op 'path' must be a string",
    ),
    ("state::update", state_ops([{"type": "set", "path": "n"}]), "'set' needs a 'value'"),
    ("state::update", state_ops([{"type": "set", "path": 3}]), "'set' needs a 'value'"),
    (
        "state::update",
        state_ops([{"type": "merge", "path": None, "value": 3}]),
        "'merge' needs an object 'value'",
    ),
    ("state::update", state_ops([{"type": "merge"}]), "'merge' needs a 'value'"),
    (
        "state::update",
        state_ops([{"type": "merge", "path": 3, "value": 3}]),
        "'merge' needs an object 'value'",
    ),
    (
        "state::update",
        state_ops([{"type": "merge", "path": 3, "value": {}}]),
        "op 'path' must be a string or a list of strings",
    ),
    ("state::update", state_ops([{"type": "append", "path": "l"}]), "'append' needs a 'value'"),
    ("state::update", state_ops([{"type": "remove"}]), "'remove' needs a 'path'"),
    (
        "state::update",
        state_ops([{"type": "set", "path": "a", "value": 1}, {"type": "nope"}]),
        "unknown op type 'nope' (known: set, merge, increment, decrement, remove, append)",
    ),
    ("state::update", None, "expected an object"),
    (
        "state::update",
        {"scope": "s", "key": "k", "ops": None, "operations": []},
        "'ops' must be a list of operations",
    ),
    ("state::update", {"scope": 3, "key": "k", "ops": 3}, "`scope` must be a string"),
    ("state::update", {"key": "k", "ops": 3}, "missing field `scope`"),
    ("stream::get", None, "expected an object"),
    ("stream::get", {}, "missing field `stream_name`"),
    ("stream::get", {"stream_name": "s", "group_id": "g"}, "missing field `item_id`"),
    ("stream::get", {"stream_name": "s", "item_id": "i"}, "missing field `group_id`"),
    (
        "stream::get",
        {"stream_name": 1, "group_id": "g", "item_id": "i"},
        "`stream_name` must be a string",
    ),
    (
        "stream::get",
        {"stream_name": "s", "group_id": "g", "item_id": 1},
        "`item_id` must be a string",
    ),
    ("stream::get", {"group_id": 3, "item_id": "i"}, "missing field `stream_name`"),
    ("stream::delete", None, "expected an object"),
    ("stream::delete", {}, "missing field `stream_name`"),
    ("stream::delete", {"stream_name": "s", "group_id": "g"}, "missing field `item_id`"),
    ("stream::delete", {"stream_name": "s", "item_id": "i"}, "missing field `group_id`"),
    (
        "stream::delete",
        {"stream_name": 1, "group_id": "g", "item_id": "i"},
        "`stream_name` must be a string",
    ),
    (
        "stream::delete",
        {"stream_name": "s", "group_id": "g", "item_id": 1},
        "`item_id` must be a string",
    ),
    ("stream::set", None, "expected an object"),
    ("stream::set", {"stream_name": "s", "group_id": "g", "item_id": "i"}, "missing field `data`"),
    ("stream::set", {"stream_name": "s", "group_id": "g", "data": 1}, "missing field `item_id`"),
    ("stream::update", stream_ops(None), "'ops' must be a list of operations"),
    ("stream::update", stream_ops([1]), "each op must be an object"),
    (
        "stream::update",
        stream_ops([{"type": "nope"}]),
        "unknown op type 'nope' (known: set, merge, increment, decrement, remove, append)",
    ),
    (
        "stream::update",
        stream_ops([{}]),
        "unknown op type None (known: set, merge, increment, decrement, remove, append)",
    ),
    (
        "stream::update",
        stream_ops([{"type": 3}]),
        "unknown op type 3 (known: set, merge, increment, decrement, remove, append)",
    ),
    (
        "stream::update",
        stream_ops([{"type": "increment", "path": "n", "by": 1.5}]),
        "'increment' needs an integer 'by'",
    ),
    (
        "stream::update",
        {"stream_name": "s", "group_id": "g", "item_id": "i", "operations": []},
        "'ops' must be a list of operations",
    ),
    ("stream::update", {"stream_name": "s", "group_id": "g", "ops": 3}, "missing field `item_id`"),
    ("stream::list", None, "expected an object"),
    ("stream::list", {"stream_name": "s"}, "missing field `group_id`"),
    ("stream::list", {"group_id": "g"}, "missing field `stream_name`"),
    ("stream::list", {"stream_name": "s", "group_id": 1}, "`group_id` must be a string"),
    ("stream::list_groups", None, "expected an object"),
    ("stream::list_groups", {}, "missing field `stream_name`"),
    ("stream::list_groups", {"stream_name": 1}, "`stream_name` must be a string"),
    ("stream::list_all", None, "expected an object"),
    ("stream::send", None, "expected an object"),
    ("stream::send", {"stream_name": "s", "group_id": "g", "data": 1}, "missing field `type`"),
    ("stream::send", {"stream_name": "s", "group_id": "g", "type": "t"}, "missing field `data`"),
    (
        "stream::send",
        {"stream_name": "s", "group_id": "g", "type": 1, "data": 1},
        "`type` must be a string",
    ),
    (
        "stream::send",
        {"stream_name": "s", "group_id": "g", "type": "t", "id": 3, "data": 1},
        "`id` must be a string or null",
    ),
    ("stream::send", {"group_id": "g", "type": "t", "id": 3}, "missing field `stream_name`"),
    (
        "stream::send",
        {"stream_name": "s", "group_id": "g", "type": "t", "id": 3},
        "`id` must be a string or null",
    ),
    ("publish", None, "expected an object"),
    ("publish", {}, ("topic_not_set", "Topic is not set")),
    ("publish", {"topic": 3}, "`topic` must be a string"),
    ("enqueue", None, "expected an object"),
    ("enqueue", {}, ("topic_not_set", "Topic is not set")),
    ("enqueue", {"topic": 3}, "`topic` must be a string"),
    ("iii::queue::redrive", None, "expected an object"),
    ("iii::queue::redrive", {}, ("queue_not_set", "Queue is not set")),
    ("engine::queue::dlq_messages", None, "expected an object"),
    ("engine::queue::dlq_messages", {}, ("queue_not_set", "Queue is not set")),
    ("iii::queue::redrive_message", None, "expected an object"),
    ("iii::queue::redrive_message", {}, ("queue_not_set", "Queue is not set")),
    (
        "iii::queue::redrive_message",
        {"queue": "q"},
        ("message_not_found", "Message None not found"),
    ),
    (
        "iii::queue::redrive_message",
        {"queue": "q", "message_id": 3},
        ("message_not_found", "Message 3 not found"),
    ),
    (
        "iii::queue::redrive_message",
        {"queue": "q", "message_id": "m"},
        ("message_not_found", "Message m not found"),
    ),
    ("engine::log::info", None, "`message` (a string) is required"),
    ("engine::log::info", [], "expected an object"),
    ("engine::log::error", None, "`message` (a string) is required"),
    ("engine::log::error", [], "expected an object"),
    ("engine::logs::list", [], "expected an object"),
    ("engine::logs::list", {"start_time": "x"}, "`start_time` must be a number (Unix ms)"),
    ("engine::logs::list", {"end_time": []}, "`end_time` must be a number (Unix ms)"),
    (
        "engine::logs::list",
        {"severity_min": 1.5},
        "`severity_min` must be a number or a level name",
    ),
    ("engine::logs::list", {"offset": -1}, "`offset` must be a non-negative integer"),
    ("engine::logs::list", {"limit": "3"}, "`limit` must be a non-negative integer"),
    (
        "engine::logs::list",
        {"offset": -1, "start_time": "x"},
        "`start_time` must be a number (Unix ms)",
    ),
    (
        "engine::logs::list",
        {"limit": -1, "severity_min": []},
        "`severity_min` must be a number or a level name",
    ),
    ("engine::logs::list", {"offset": -1, "limit": "x"}, "`offset` must be a non-negative integer"),
    ("engine::traces::list", [], "expected an object"),
    ("engine::traces::list", {"offset": -1}, "`offset` must be a non-negative integer"),
    ("engine::traces::list", {"limit": "x"}, "`limit` must be a non-negative integer"),
    ("engine::traces::list", {"sort_by": "nope"}, "`sort_by` is start_time, duration or name"),
    ("engine::traces::list", {"start_time": "x"}, "`start_time` must be a number (Unix ms)"),
    ("engine::traces::list", {"attributes": "ab"}, "`attributes` is a list of [key, value] pairs"),
    (
        "engine::traces::list",
        {"sort_by": "nope", "offset": -1},
        "`offset` must be a non-negative integer",
    ),
    ("engine::traces::tree", None, "`trace_id` is required"),
    ("engine::traces::tree", [], "expected an object"),
    ("engine::metrics::list", [], "expected an object"),
    ("engine::metrics::list", {"start_time": "x"}, "`start_time` must be a number (Unix ms)"),
    ("engine::metrics::list", {"end_time": False}, "`end_time` must be a number (Unix ms)"),
    (
        "engine::metrics::list",
        {"aggregate_interval": 0},
        "`aggregate_interval` must be a positive integer (s)",
    ),
    (
        "engine::metrics::list",
        {"aggregate_interval": 0, "start_time": "x"},
        "`start_time` must be a number (Unix ms)",
    ),
    ("engine::rollups::list", [], "expected an object"),
    ("engine::rollups::list", {"level": -1}, "`level` must be a non-negative integer"),
    ("engine::rollups::list", {"level": 3}, "`level` is 0 (1 min), 1 (5 min) or 2 (1 h)"),
    ("engine::rollups::list", {"metric_name": 3}, "`metric_name` must be a string"),
    ("engine::rollups::list", {"start_time": "x"}, "`start_time` must be a number (Unix ms)"),
    (
        "engine::rollups::list",
        {"metric_name": 3, "start_time": "x"},
        "`start_time` must be a number (Unix ms)",
    ),
    (
        "engine::rollups::list",
        {"level": 5, "start_time": "x"},
        "`level` is 0 (1 min), 1 (5 min) or 2 (1 h)",
    ),
    ("engine::baggage::get", None, "expected an object"),
    ("engine::baggage::get", {}, "missing field `key` (a string)"),
    ("engine::baggage::set", None, "expected an object"),
    ("engine::baggage::set", {}, "missing field `key` (a string)"),
    ("engine::baggage::set", {"key": "k"}, "missing field `value` (a string)"),
    (
        "engine::baggage::set",
        {"key": "a b", "value": "v"},
        "`key` must be a W3C baggage key (an HTTP token)",
    ),
    ("engine::baggage::set", {"key": "a b", "value": 3}, "missing field `value` (a string)"),
    ("engine::baggage::get_all", [], "expected an object"),
]

#: (function, input) answered without an input error.
ACCEPTED: list[tuple[str, Any]] = [
    ("engine::workers::register", {}),
    ("engine::workers::register", {"_caller_worker_id": 3, "a": 1}),
    ("engine::functions::list", None),
    ("engine::functions::list", []),
    ("engine::functions::list", "x"),
    ("engine::functions::list", 3),
    ("engine::functions::list", {}),
    ("engine::functions::list", {"include_internal": None}),
    ("engine::functions::list", {"include_internal": True}),
    ("engine::triggers::list", None),
    ("engine::triggers::list", []),
    ("engine::triggers::list", "x"),
    ("engine::triggers::list", 3),
    ("engine::triggers::list", {}),
    ("engine::triggers::list", {"include_internal": None}),
    ("engine::triggers::list", {"include_internal": True}),
    ("engine::workers::list", None),
    ("engine::workers::list", []),
    ("engine::workers::list", "x"),
    ("engine::workers::list", 3),
    ("engine::workers::list", {"worker_id": 3}),
    ("engine::workers::list", {"worker_id": None}),
    ("engine::channels::create", None),
    ("engine::channels::create", []),
    ("engine::channels::create", "x"),
    ("engine::channels::create", 3),
    ("engine::channels::create", {"buffer_size": None}),
    ("engine::channels::create", {"buffer_size": 4}),
    ("state::get", {"scope": "", "key": ""}),
    ("state::delete", {"scope": "", "key": ""}),
    ("state::set", {"scope": "s", "key": "k", "value": None}),
    ("state::set", {"scope": "s", "key": "k", "data": 2}),
    ("state::set", {"scope": "s", "key": "k", "value": 1, "data": 2}),
    ("state::list", {"scope": "s"}),
    ("state::update", state_ops([])),
    ("state::update", state_ops([{"type": "increment", "path": "n", "value": 2}])),
    ("state::update", state_ops([{"type": "decrement", "path": None, "by": 1}])),
    ("state::update", state_ops([{"type": "set", "value": None}])),
    ("state::update", state_ops([{"type": "merge", "path": ["a"], "value": {"b": 1}}])),
    ("state::update", state_ops([{"type": "append", "path": ["l"], "value": 1}])),
    ("state::update", state_ops([{"type": "append", "value": 1}])),
    ("state::update", state_ops([{"type": "remove", "path": "a"}])),
    (
        "state::update",
        {"scope": "s", "key": "k", "operations": [{"type": "set", "path": "a", "value": 1}]},
    ),
    ("state::update", {"scope": "s", "key": "k", "ops": [], "operations": 3}),
    ("stream::set", {"stream_name": "s", "group_id": "g", "item_id": "i", "data": None}),
    ("stream::update", stream_ops([])),
    ("stream::list_groups", {"stream_name": "s"}),
    ("stream::list_all", {}),
    ("stream::send", {"stream_name": "s", "group_id": "g", "type": "t", "data": None}),
    ("stream::send", {"stream_name": "s", "group_id": "g", "type": "t", "id": None, "data": 1}),
    ("publish", {"topic": "t"}),
    ("publish", {"topic": "t", "data": None}),
    ("enqueue", {"topic": "t"}),
    ("enqueue", {"topic": "t", "data": None}),
    ("iii::queue::redrive", {"queue": "q"}),
    ("engine::queue::dlq_messages", {"queue": "q"}),
    ("engine::log::info", {"message": "m"}),
    ("engine::log::info", {"message": "m", "data": 3, "service_name": 4, "trace_id": ""}),
    ("engine::log::error", {"message": "m"}),
    ("engine::log::error", {"message": "m", "data": 3, "service_name": 4, "trace_id": ""}),
    ("engine::logs::list", None),
    ("engine::logs::list", {}),
    ("engine::logs::list", {"start_time": 1.5}),
    ("engine::logs::list", {"severity_min": "nope"}),
    ("engine::logs::list", {"severity_min": "INFO"}),
    ("engine::logs::list", {"limit": None}),
    ("engine::logs::list", {"trace_id": 3, "span_id": [], "severity_text": 4}),
    ("engine::traces::list", None),
    ("engine::traces::list", {}),
    ("engine::traces::list", {"sort_by": ""}),
    ("engine::traces::list", {"sort_by": None}),
    ("engine::traces::list", {"sort_by": "duration", "sort_order": "asc"}),
    ("engine::traces::list", {"attributes": [["k", "v"]]}),
    ("engine::traces::list", {"attributes": []}),
    ("engine::traces::list", {"attributes": None}),
    ("engine::traces::tree", {"trace_id": "t"}),
    ("engine::metrics::list", None),
    ("engine::metrics::list", {}),
    ("engine::metrics::list", {"aggregate_interval": 60}),
    ("engine::metrics::list", {"aggregate_interval": None}),
    ("engine::metrics::list", {"metric_name": 3}),
    ("engine::rollups::list", None),
    ("engine::rollups::list", {}),
    ("engine::rollups::list", {"level": 2}),
    ("engine::rollups::list", {"level": None}),
    ("engine::baggage::get", {"key": ""}),
    ("engine::baggage::get", {"key": "k"}),
    ("engine::baggage::set", {"key": "k", "value": ""}),
    ("engine::baggage::get_all", None),
    ("engine::baggage::get_all", {}),
]

#: (trigger type, config, the ``trigger_registration_failed`` message).
CONFIG_REFUSED: list[tuple[str, Any, str]] = [
    ("state", [], "state trigger config must be an object"),
    ("state", {"scope": 3}, "state trigger 'scope' must be a string"),
    ("state", {"key": []}, "state trigger 'key' must be a string"),
    (
        "state",
        {"condition_function_id": 1},
        "state trigger 'condition_function_id' must be a string",
    ),
    ("state", {"scope": 3, "key": 4}, "state trigger 'scope' must be a string"),
    ("stream", None, "stream trigger config must be an object"),
    ("stream", {}, "stream trigger needs a non-empty string 'stream_name'"),
    ("stream", {"stream_name": "s", "group_id": 3}, "stream trigger 'group_id' must be a string"),
    ("stream", {"stream_name": "s", "item_id": 3}, "stream trigger 'item_id' must be a string"),
    (
        "stream",
        {"stream_name": "s", "condition_function_id": 3},
        "stream trigger 'condition_function_id' must be a string",
    ),
    ("queue", None, "queue trigger needs a non-empty string 'topic'"),
    ("queue", {"topic": "t", "queue_config": 3}, "queue trigger 'queue_config' must be an object"),
    (
        "queue",
        {"topic": "t", "condition_function_id": 3},
        "queue trigger 'condition_function_id' must be a string",
    ),
    (
        "queue",
        {"topic": "t", "queue_config": [], "condition_function_id": 3},
        "queue trigger 'queue_config' must be an object",
    ),
    ("subscribe", None, "subscribe trigger needs a non-empty string 'topic'"),
    ("cron", None, "cron trigger config must be an object with 'expression'"),
    ("cron", {}, "Cron expression is required"),
    ("cron", {"expression": 5}, "Cron expression must be a string"),
    (
        "cron",
        {"expression": "* * * * * *", "condition_function_id": 3},
        "cron trigger 'condition_function_id' must be a string",
    ),
    ("cron", {"expression": 5, "condition_function_id": 3}, "Cron expression must be a string"),
    ("http", None, "api_path is required for http triggers"),
    ("http", {"api_path": "", "http_method": 3}, "http_method must be a string"),
    ("log", [], "log trigger config must be an object"),
    (
        "log",
        {"level": 3},
        "log trigger 'level' must be one of all, debug, error, info, trace, warn, got 3",
    ),
    (
        "log",
        {"level": "nope"},
        "log trigger 'level' must be one of all, debug, error, info, trace, warn, got 'nope'",
    ),
]

#: (trigger type, config) bound.
CONFIG_ACCEPTED: list[tuple[str, Any]] = [
    ("state", None),
    ("state", {}),
    ("state", {"scope": None, "key": "k"}),
    ("stream", {"stream_name": "s", "group_id": None, "item_id": ""}),
    ("queue", {"topic": "t", "queue_config": None}),
    ("subscribe", {"topic": "t"}),
    ("http", {"api_path": "p", "http_method": ""}),
    ("http", {"api_path": "p", "http_method": "post"}),
    ("log", None),
    ("log", {}),
    ("log", {"level": None}),
    ("log", {"level": "INFO"}),
    ("log", {"severity_min": 0}),
]


def every_module() -> tuple[ModuleEntry, ...]:
    """Each module with a function or trigger type that reads its input, in memory."""
    return (
        ModuleEntry(
            "rest_api",
            "modules::api::RestApiModule",
            "modules[0]",
            RestApiConfig(port=0, host="127.0.0.1"),
        ),
        ModuleEntry("state", "modules::state::StateModule", "modules[1]", StateConfig()),
        ModuleEntry(
            "stream",
            "modules::stream::StreamModule",
            "modules[2]",
            StreamConfig(port=0, host="127.0.0.1"),
        ),
        ModuleEntry("queue", "modules::queue::QueueModule", "modules[3]", QueueConfig()),
        ModuleEntry(
            "pubsub",
            "modules::pubsub::PubSubModule",
            "modules[4]",
            PubSubConfig(adapter=LocalPubSubConfig()),
        ),
        ModuleEntry("cron", "modules::cron::CronModule", "modules[5]", CronConfig()),
        ModuleEntry(
            "observability",
            "modules::observability::OtelModule",
            "modules[6]",
            OtelConfig(exporter="memory", logs_console_output=False),
        ),
    )


@pytest.fixture
async def engine(start_engine: StartEngine) -> Engine:
    return await start_engine(modules=every_module())


async def answer(worker: RawWorker, function_id: str, data: Any) -> Any:
    """ "accepted", the detail of a ``deserialization_error``, or (code, message)."""
    error = (await worker.call(function_id, data)).get("error")
    if error is None:
        return "accepted"
    prefix = f"Failed to deserialize input for {function_id}: "
    if error["code"] == "deserialization_error" and error["message"].startswith(prefix):
        return error["message"][len(prefix) :]
    return (error["code"], error["message"])


async def bind(worker: RawWorker, binding_id: str, trigger_type: str, config: Any) -> str:
    """ "bound" (then unbound again), or the message the binding was refused with."""
    binding = {"id": binding_id, "trigger_type": trigger_type}
    await worker.send(
        {"type": "registertrigger", **binding, "function_id": "test::nothing", "config": config}
    )
    # The engine answers frames in order: a refusal comes before a later call's result.
    await worker.invoke("engine::trigger-types::list", {}, f"after-{binding_id}")
    refusal = None
    while (frame := await worker.recv())["type"] != "invocationresult":
        assert frame["type"] == "triggerregistrationresult", frame
        assert frame["error"]["code"] == "trigger_registration_failed", frame
        refusal = frame["error"]["message"]
    if refusal is not None:
        return str(refusal)
    await worker.send({"type": "unregistertrigger", **binding})
    return "bound"


async def test_each_input_refusal_has_its_message(engine: Engine) -> None:
    async with raw_worker(worker_url(engine)) as worker:
        answers = [(f, data, await answer(worker, f, data)) for f, data, _ in REFUSED]
    assert answers == REFUSED


async def test_inputs_accepted_as_before(engine: Engine) -> None:
    async with raw_worker(worker_url(engine)) as worker:
        answers = [(f, data, await answer(worker, f, data)) for f, data in ACCEPTED]
    refused = [row for row in answers if row[2] != "accepted"]
    assert refused == []


async def test_each_config_refusal_has_its_message(engine: Engine) -> None:
    async with raw_worker(worker_url(engine)) as worker:
        answers = [
            (kind, config, await bind(worker, f"b-{n}", kind, config))
            for n, (kind, config, _) in enumerate(CONFIG_REFUSED)
        ]
    assert answers == CONFIG_REFUSED


async def test_configs_accepted_as_before(engine: Engine) -> None:
    async with raw_worker(worker_url(engine)) as worker:
        answers = [
            (kind, config, await bind(worker, f"b-{n}", kind, config))
            for n, (kind, config) in enumerate(CONFIG_ACCEPTED)
        ]
    assert [row for row in answers if row[2] != "bound"] == []


#: Inputs refused since the inputs are declared (a bool is not a number, a field's type is
#: checked whatever the data): (function, input, detail), with what each did before.
STRICTER: list[tuple[str, Any, str]] = [
    # Before: accepted, true read as the severity number 1.
    (
        "engine::logs::list",
        {"severity_min": True},
        "`severity_min` must be a number or a level name",
    ),
    # Before: any false-like value sorted by start time.
    ("engine::traces::list", {"sort_by": 0}, "`sort_by` is start_time, duration or name"),
    # Before: invocation_failed, "TypeError: 'int' object is not iterable" (spans stored).
    ("engine::traces::list", {"attributes": 5}, "`attributes` is a list of [key, value] pairs"),
    # Before: invocation_failed, "TypeError: '<' not supported ..." (spans stored).
    ("engine::traces::list", {"min_duration_ms": "x"}, "`min_duration_ms` must be a number"),
]


async def test_inputs_stricter_than_the_hand_written_checks(engine: Engine) -> None:
    async with raw_worker(worker_url(engine)) as worker:
        answers = [(f, data, await answer(worker, f, data)) for f, data, _ in STRICTER]
    assert answers == STRICTER


async def test_inputs_stricter_http_method_must_be_a_string(engine: Engine) -> None:
    # Before: any false-like value (0, []) bound the route as GET.
    async with raw_worker(worker_url(engine)) as worker:
        refused = [
            await bind(worker, f"m-{n}", "http", {"api_path": "p", "http_method": method})
            for n, method in enumerate([0, [], False])
        ]
    assert refused == ["http_method must be a string"] * 3


async def test_inputs_stricter_span_filters_are_checked_with_no_span_stored(
    engine: Engine,
) -> None:
    # Before: the times and attributes were checked against each stored span, so accepted
    # while none was (here: the engine's first call).
    async with raw_worker(worker_url(engine)) as worker:
        refused = await answer(worker, "engine::traces::list", {"start_time": "x"})
    assert refused == "`start_time` must be a number (Unix ms)"
