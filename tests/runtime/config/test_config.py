"""Config loading (spec/modules.md §1, D14): schemas, defaults, interpolation, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from iii_trio.runtime.builtins.config import TelemetryConfig
from iii_trio.runtime.config.loading import EngineConfig, interpolate
from iii_trio.runtime.config.schema import ConfigError
from iii_trio.runtime.engine import default_config, load_config, parse_config
from iii_trio.runtime.modules.absent import ExecConfig
from iii_trio.runtime.modules.cron.config import CronConfig, KvCronConfig
from iii_trio.runtime.modules.observability.config import AlertRule, OtelConfig
from iii_trio.runtime.modules.pubsub.config import LocalPubSubConfig, PubSubConfig
from iii_trio.runtime.modules.queue.config import BuiltinQueueConfig, NamedQueueConfig, QueueConfig
from iii_trio.runtime.modules.rest_api.config import CorsConfig, RestApiConfig
from iii_trio.runtime.modules.state.config import StateConfig
from iii_trio.runtime.modules.storage.config import (
    BridgeAdapterConfig,
    KvStoreConfig,
    RedisAdapterConfig,
    StreamKvStoreConfig,
)
from iii_trio.runtime.modules.stream.config import StreamConfig

REPO_CONFIG = Path(__file__).resolve().parents[3] / "config.yaml"


def parse(text: str, **environ: str) -> EngineConfig:
    return parse_config(text, environ=environ)


def error(text: str, **environ: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ=environ)
    return info.value


# -- shapes and defaults ------------------------------------------------------------------------


def test_empty_file_is_the_defaults() -> None:
    for text in ("", "\n# only a comment\n"):
        config = parse(text)
        assert config == EngineConfig(source="config.yaml")
        assert config.port == 49134
        assert config.default_timeout == 300000
        assert config.max_message_size == 64 * 1024 * 1024
        assert config.max_in_flight_per_worker == 1024
        assert config.auth_token is None
        assert config.modules == ()


def test_top_level_keys() -> None:
    config = parse(
        "port: 50000\ndefault_timeout: 1000\nmax_message_size: 2048\n"
        "max_in_flight_per_worker: 8\nauth_token: s3cret\n"
    )
    assert (config.port, config.default_timeout, config.max_message_size) == (50000, 1000, 2048)
    assert config.max_in_flight_per_worker == 8
    assert config.auth_token == "s3cret"


def test_exposure_and_limit_keys_have_documented_defaults() -> None:
    config = parse("")
    assert (config.host, config.protected_mode) == ("0.0.0.0", True)
    assert (config.max_connections, config.max_connections_per_address) == (8192, 1024)
    assert (config.keepalive_interval, config.keepalive_timeout) == (30000, 30000)
    assert config.reserved_descriptors == 128
    assert (config.max_functions_per_worker, config.max_triggers_per_worker) == (10000, 10000)
    assert config.max_trigger_types_per_worker == 1000
    assert (config.max_channels_per_worker, config.max_worker_channels) == (1000, 10000)
    stream = StreamConfig()
    assert (stream.guard_timeout_ms, stream.max_subscriptions_per_client) == (5000, 1024)
    assert (stream.max_connections, stream.max_connections_per_address) == (4096, 256)


def test_exposure_and_limit_keys_are_read_from_the_file() -> None:
    config = parse(
        "host: 127.0.0.1\nprotected_mode: false\nmax_connections: 10\n"
        "max_connections_per_address: 0\nkeepalive_interval: 0\nkeepalive_timeout: 5\n"
        "reserved_descriptors: 7\nmax_functions_per_worker: 1\nmax_triggers_per_worker: 2\n"
        "max_trigger_types_per_worker: 3\nmax_channels_per_worker: 4\nmax_worker_channels: 5\n"
    )
    assert (config.host, config.protected_mode, config.max_connections) == ("127.0.0.1", False, 10)
    assert (config.max_connections_per_address, config.keepalive_interval) == (0, 0)
    assert (config.keepalive_timeout, config.reserved_descriptors) == (5, 7)
    assert (config.max_functions_per_worker, config.max_triggers_per_worker) == (1, 2)
    assert (config.max_trigger_types_per_worker, config.max_channels_per_worker) == (3, 4)
    assert config.max_worker_channels == 5


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("protected_mode: 1\n", "protected_mode", "expected a boolean"),
        ("max_connections: 0\n", "max_connections", "at least 1"),
        ("keepalive_timeout: 0\n", "keepalive_timeout", "at least 1"),
        ("reserved_descriptors: -1\n", "reserved_descriptors", "at least 0"),
        ("host: [a]\n", "host", "expected a string"),
        ("protected: false\n", "protected", "did you mean 'protected_mode'?"),
    ],
)
def test_bad_exposure_keys_are_one_message(text: str, key: str, problem: str) -> None:
    err = error(text)
    assert err.key_path == key
    assert problem in err.problem


@pytest.mark.parametrize("text", ["port: 0\n", "port: 0\nmodules: []\n"])
def test_file_port_zero_means_49134(text: str) -> None:
    assert parse(text).port == 49134


def test_programmatic_port_zero_stays_zero() -> None:
    config = EngineConfig(port=0, host="127.0.0.1")
    assert (config.port, config.host) == (0, "127.0.0.1")


@pytest.mark.parametrize("text", ["auth_token: ''\n", "auth_token:\n", "auth_token: ${T:}\n"])
def test_empty_auth_token_is_unset(text: str) -> None:
    assert parse(text).auth_token is None
    assert EngineConfig(auth_token="").auth_token is None


SEED = """
port: 49134
modules:
  - class: modules::api::RestApiModule
    config:
      port: 3111
      cors:
        allowed_origins: ['*']
        allowed_headers: ['*']
  - class: modules::state::StateModule
    config:
      adapter:
        class: modules::state::adapters::KvStore
        config: {store_method: file_based, file_path: ./data/state}
"""

NEWER = """
port: 49134
default_timeout: 300000
auth_token: ${III_TOKEN:}
workers:
  - name: iii-http
    config: {port: 3111, default_timeout: 30000}
  - name: iii-queue
    config:
      adapter: {name: builtin, config: {store_method: file_based, file_path: ./data/queue}}
"""


def test_seed_schema() -> None:
    config = parse(SEED)
    api, state = config.modules
    assert (api.kind, api.declared_as, api.key_path) == (
        "rest_api",
        "modules::api::RestApiModule",
        "modules[0]",
    )
    assert api.config == RestApiConfig(
        cors=CorsConfig(allowed_origins=("*",), allowed_headers=("*",))
    )
    assert (state.kind, state.key_path) == ("state", "modules[1]")
    assert state.config == StateConfig(
        adapter=KvStoreConfig(store_method="file_based", file_path="./data/state")
    )
    assert config.warnings == ()


def test_newer_schema() -> None:
    config = parse(NEWER)
    assert config.auth_token is None
    http, queue = config.modules
    assert (http.kind, http.declared_as, http.key_path) == ("rest_api", "iii-http", "workers[0]")
    assert isinstance(http.config, RestApiConfig)
    assert http.config.default_timeout == 30000
    assert queue.config == QueueConfig(
        adapter=BuiltinQueueConfig(store_method="file_based", file_path="./data/queue")
    )


def test_mixed_file_loads_modules_then_workers() -> None:
    text = """
workers:
  - name: iii-pubsub
modules:
  - class: modules::cron::CronModule
  - class: modules::stream::StreamModule
    config: null
"""
    config = parse(text)
    assert [(m.kind, m.key_path) for m in config.modules] == [
        ("cron", "modules[0]"),
        ("stream", "modules[1]"),
        ("pubsub", "workers[0]"),
    ]


MODULE_DEFAULTS = [
    ("modules::api::RestApiModule", "rest_api", RestApiConfig()),
    ("modules::state::StateModule", "state", StateConfig()),
    ("modules::stream::StreamModule", "stream", StreamConfig()),
    ("modules::queue::QueueModule", "queue", QueueConfig()),
    ("modules::pubsub::PubSubModule", "pubsub", PubSubConfig()),
    ("modules::cron::CronModule", "cron", CronConfig()),
    ("modules::observability::OtelModule", "observability", OtelConfig()),
    ("modules::telemetry::TelemetryModule", "telemetry", TelemetryConfig()),
]


@pytest.mark.parametrize(("declared", "kind", "expected"), MODULE_DEFAULTS)
def test_missing_config_means_defaults(declared: str, kind: str, expected: object) -> None:
    (entry,) = parse(f"modules:\n  - class: {declared}\n").modules
    assert (entry.kind, entry.config) == (kind, expected)


def test_spec_defaults() -> None:
    api = RestApiConfig()
    assert (api.port, api.host, api.default_timeout) == (3111, "0.0.0.0", 30000)
    assert (api.concurrency_request_limit, api.body_limit, api.cors) == (1024, 16 * 2**20, None)
    assert StateConfig().adapter == KvStoreConfig()
    assert KvStoreConfig() == KvStoreConfig(
        store_method="in_memory", file_path="kv_store_data.db", save_interval_ms=5000
    )
    stream = StreamConfig()
    assert (stream.port, stream.host, stream.auth_function) == (3112, "0.0.0.0", None)
    assert stream.adapter == StreamKvStoreConfig(channel_size=256)
    builtin = BuiltinQueueConfig()
    assert (builtin.max_attempts, builtin.backoff_ms, builtin.concurrency) == (3, 1000, 10)
    assert (builtin.poll_interval_ms, builtin.mode, builtin.visibility_timeout_ms) == (
        100,
        "concurrent",
        None,
    )
    assert PubSubConfig().adapter == LocalPubSubConfig()
    assert CronConfig().adapter == KvCronConfig(lock_ttl_ms=30000, lock_index="cron_locks")
    otel = OtelConfig()
    assert (otel.exporter, otel.metrics_retention_seconds, otel.logs_max_count) == (
        "otlp",
        3600,
        1000,
    )
    assert (otel.logs_sampling_ratio, otel.logs_console_output) == (1.0, True)


def test_adapters_both_forms() -> None:
    text = """
modules:
  - class: modules::state::StateModule
    config: {adapter: {name: redis, config: {redis_url: 'redis://r:6379'}}}
  - class: modules::stream::StreamModule
    config: {adapter: {class: modules::stream::adapters::Bridge, config: {bridge_url: ws://b}}}
  - class: modules::pubsub::PubSubModule
    config: {adapter: {class: modules::pubsub::RedisAdapter}}
  - class: modules::cron::CronModule
    config: {adapter: {class: modules::cron::KvCronAdapter, config: {lock_ttl_ms: 5}}}
"""
    adapters = [m.config.adapter for m in parse(text).modules]  # type: ignore[union-attr]
    assert adapters == [
        RedisAdapterConfig(redis_url="redis://r:6379"),
        BridgeAdapterConfig(bridge_url="ws://b"),
        RedisAdapterConfig(),
        KvCronConfig(lock_ttl_ms=5),
    ]
    text = """
modules:
  - class: modules::stream::StreamModule
    config: {adapter: {name: kv, config: {channel_size: 8}}}
"""
    stream = parse(text).modules[0].config
    assert stream.adapter == StreamKvStoreConfig(channel_size=8)  # type: ignore[union-attr]


def test_queue_configs() -> None:
    text = """
modules:
  - class: modules::queue::QueueModule
    config:
      queue_configs:
        payment: {max_retries: 4, concurrency: 10, type: fifo, message_group_field: txn_id,
                  backoff_ms: 1000, poll_interval_ms: 100}
        emails: {}
"""
    (entry,) = parse(text).modules
    assert isinstance(entry.config, QueueConfig)
    assert entry.config.queue_configs == {
        "payment": NamedQueueConfig(
            max_retries=4,
            concurrency=10,
            type="fifo",
            message_group_field="txn_id",
            backoff_ms=1000,
            poll_interval_ms=100,
        ),
        "emails": NamedQueueConfig(),
    }


def test_secondary_modules_and_otel_details() -> None:
    text = """
modules:
  - class: modules::shell::ExecModule
    config: {exec: ["npm run dev"], watch: ["src/**/*.ts"]}
  - class: modules::observability::OtelModule
    config:
      exporter: memory
      sampling:
        default: 0.5
        rules: [{operation: 'api.*', rate: 1}]
        rate_limit: {max_traces_per_second: 10}
      alerts:
        - name: errors
          metric: iii.invocations.error
          threshold: 10
          action: {type: function, path: a::b}
  - class: modules::http_functions::HttpFunctionsModule
  - class: modules::bridge_client::BridgeClientModule
    config: {url: 'ws://h:49134', forward: [{local_function: a, remote_function: b}]}
  - class: modules::worker::WorkerModule
"""
    exec_, otel, http, bridge, worker = parse(text).modules
    assert exec_.config == ExecConfig(exec=("npm run dev",), watch=("src/**/*.ts",))
    assert isinstance(otel.config, OtelConfig)
    assert otel.config.sampling is not None
    assert otel.config.sampling.rules[0].rate == 1.0
    (rule,) = otel.config.alerts
    assert isinstance(rule, AlertRule)
    assert (rule.operator, rule.window_seconds, rule.action.path) == (">", 60, "a::b")
    assert http.kind == "http_functions"
    assert bridge.kind == "bridge_client"
    assert worker.kind == "worker"


def test_null_sections_and_lists_are_empty() -> None:
    config = parse(
        "workers:\n  - name: iii-observability\n"
        "    config: {alerts: null, sampling: null}\n  - name: iii-queue\n"
        "    config: {queue_configs: null, adapter: null}\n"
    )
    otel, queue = (m.config for m in config.modules)
    assert otel == OtelConfig()
    assert queue == QueueConfig()
    assert parse("modules:\nworkers: null\n").modules == ()


def test_default_config() -> None:
    config = default_config()
    assert [m.kind for m in config.modules] == [
        "rest_api",
        "state",
        "stream",
        "queue",
        "pubsub",
        "cron",
    ]
    assert config.modules[0].config == RestApiConfig()
    assert config.port == 49134
    assert config.source == "<defaults>"


def test_repo_config_yaml_loads() -> None:
    config = load_config(REPO_CONFIG, environ={})
    assert config.port == 49134
    assert config.warnings == ()
    assert [m.kind for m in config.modules] == [
        "rest_api",
        "state",
        "stream",
        "queue",
        "pubsub",
        "cron",
        "observability",
    ]
    api = config.modules[0].config
    assert isinstance(api, RestApiConfig)
    assert (api.port, api.concurrency_request_limit, api.default_timeout) == (3111, 2048, 300000)
    assert api.cors is not None
    assert api.cors.allowed_methods == ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
    assert config.modules[1].config == StateConfig(
        adapter=KvStoreConfig(store_method="file_based", file_path="./data/state")
    )


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("port: ${P:4000}\n")
    config = load_config(path, environ={"P": "4100"})
    assert (config.port, config.source) == (4100, str(path))


# -- interpolation (§1.5) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("a: ${X}", {"X": "1"}, "a: 1"),
        ("a: ${X:7}", {}, "a: 7"),
        ("a: ${X:7}", {"X": "1"}, "a: 1"),
        ("a: ${X:}", {}, "a: "),
        ("a: ${X:7}", {"X": ""}, "a: "),  # set-but-empty wins
        ("a: ${X:-a}", {}, "a: -a"),  # ':-' is not special
        ("a: ${REDIS:redis://h:6379/0}", {}, "a: redis://h:6379/0"),  # first colon splits
        ("# ${X}\na: 1", {"X": "in a comment"}, "# in a comment\na: 1"),
        ("a: ${X}${Y:z}", {"X": "x"}, "a: xz"),
        ("a: $X {X}", {}, "a: $X {X}"),
    ],
)
def test_interpolate(text: str, environ: dict[str, str], expected: str) -> None:
    assert interpolate(text, environ, source="config.yaml") == expected


def test_interpolation_happens_before_yaml_typing() -> None:
    text = (
        "modules:\n  - class: modules::observability::OtelModule\n    config: {enabled: ${E:true}}"
    )
    (entry,) = parse(text).modules
    assert isinstance(entry.config, OtelConfig)
    assert entry.config.enabled is True
    assert parse("port: ${P}\n", P="4000").port == 4000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "auth_token: ${III_TOKEN}\n",
            "config.yaml: auth_token: environment variable III_TOKEN is not set and "
            "'${III_TOKEN}' has no default: set it or write '${III_TOKEN:default}'",
        ),
        (
            "modules:\n  - class: modules::api::RestApiModule\n    config: {host: ${HOST}}\n",
            "config.yaml: modules[0].config.host: environment variable HOST is not set",
        ),
        (
            "# token: ${SECRET}\nport: 1\n",
            "config.yaml: line 1, column 10: environment variable SECRET is not set",
        ),
    ],
)
def test_unset_variable_without_default(text: str, message: str) -> None:
    assert str(error(text)).startswith(message)


def test_unset_variable_in_a_comment_says_so() -> None:
    assert "placeholders in comments are expanded too" in str(error("# ${SECRET}\n"))


# -- errors (§1.6) ------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"Config file not found: {path} "
        "(pass --use-default-config to start with the built-in defaults)"
    )
    assert info.value.file == str(path)


API = "modules:\n  - class: modules::api::RestApiModule\n    config:\n"


@pytest.mark.parametrize(
    ("text", "key_path", "problem"),
    [
        # unknown keys at every level, with the closest valid name
        (
            API + "      cors:\n        allowed_origin: ['*']\n",
            "modules[0].config.cors.allowed_origin",
            "unknown key (did you mean 'allowed_origins'?)",
        ),
        ("prot: 1\n", "prot", "unknown key (did you mean 'port'?)"),
        ("modules:\n  - {clas: x}\n", "modules[0].clas", "unknown key (did you mean 'class'?)"),
        (API + "      bogus: 1\n", "modules[0].config.bogus", "unknown key"),
        (
            "modules:\n  - class: modules::queue::QueueModule\n    config:\n"
            "      queue_configs: {q: {max_retry: 1}}\n",
            "modules[0].config.queue_configs.q.max_retry",
            "unknown key (did you mean 'max_retries'?)",
        ),
        # unknown module class or name
        (
            "modules:\n  - class: modules::api::RestApiModul\n",
            "modules[0].class",
            "unknown module class 'modules::api::RestApiModul' "
            "(did you mean 'modules::api::RestApiModule'?)",
        ),
        (
            "workers:\n  - name: iii-htp\n",
            "workers[0].name",
            "unknown module name 'iii-htp' (did you mean 'iii-http'?)",
        ),
        (
            "modules:\n  - class: iii-http\n",
            "modules[0].class",
            "'iii-http' is a module name, not a class: write `name: iii-http`",
        ),
        (
            "modules:\n  - class: modules::kv_server::KvServer\n",
            "modules[0].class",
            "modules::kv_server::KvServer is not provided (it existed only briefly in the seed "
            "era); use modules::state::StateModule",
        ),
        # one module of each kind, across both schemas
        (
            "modules:\n  - class: modules::api::RestApiModule\nworkers:\n  - name: iii-http\n",
            "workers[0]",
            "iii-http is already loaded by modules[0] (modules::api::RestApiModule); "
            "list each module once",
        ),
        # unknown adapter
        (
            "modules:\n  - class: modules::state::StateModule\n    config:\n"
            "      adapter: {class: modules::state::adapters::KvStor}\n",
            "modules[0].config.adapter.class",
            "unknown state adapter class 'modules::state::adapters::KvStor' "
            "(did you mean 'modules::state::adapters::KvStore'?)",
        ),
        (
            "workers:\n  - name: iii-queue\n    config: {adapter: {name: bultin}}\n",
            "workers[0].config.adapter.name",
            "unknown queue adapter name 'bultin' (did you mean 'builtin'?)",
        ),
        # entry shape
        (
            "modules:\n  - {class: modules::state::StateModule, name: iii-state}\n",
            "modules[0]",
            "has both 'class' and 'name'; give exactly one",
        ),
        (
            "modules:\n  - {config: {}}\n",
            "modules[0]",
            "missing 'class' (or 'name'): which module to load",
        ),
        ("modules: {a: 1}\n", "modules", "expected a list of module entries, got a mapping"),
        # wrong type (bool is not an int)
        ("port: true\n", "port", "expected an integer, got a boolean (true)"),
        ("port: '3111'\n", "port", "expected an integer, got a string ('3111')"),
        (
            API + "      port: 1.5\n",
            "modules[0].config.port",
            "expected an integer, got a number (1.5)",
        ),
        (
            "auth_token: 12345\n",
            "auth_token",
            "expected a string, got an integer (12345) (quote it to make it a string)",
        ),
        (API + "      cors: [x]\n", "modules[0].config.cors", "expected a mapping, got a list"),
        (
            API + "      cors: {allowed_methods: GET}\n",
            "modules[0].config.cors.allowed_methods",
            "expected a list, got a string ('GET')",
        ),
        # unknown enum value
        (
            "modules:\n  - class: modules::state::StateModule\n    config:\n"
            "      adapter: {name: kv, config: {store_method: filebased}}\n",
            "modules[0].config.adapter.config.store_method",
            "unknown value 'filebased', expected one of 'in_memory', 'file_based' "
            "(did you mean 'file_based'?)",
        ),
        # out of range
        ("port: 70000\n", "port", "must be between 0 and 65535, got 70000"),
        ("default_timeout: 0\n", "default_timeout", "must be at least 1, got 0"),
        (
            API + "      concurrency_request_limit: 0\n",
            "modules[0].config.concurrency_request_limit",
            "must be at least 1, got 0",
        ),
        (
            "modules:\n  - class: modules::observability::OtelModule\n"
            "    config: {sampling_ratio: 1.5}\n",
            "modules[0].config.sampling_ratio",
            "must be between 0.0 and 1.0, got 1.5",
        ),
        # cross-key rules and required keys
        (
            "modules:\n  - class: modules::queue::QueueModule\n    config:\n"
            "      queue_configs:\n        payment: {type: fifo}\n",
            "modules[0].config.queue_configs.payment.message_group_field",
            "required when type is 'fifo' (name the data field that groups messages)",
        ),
        (
            "modules:\n  - class: modules::shell::ExecModule\n",
            "modules[0].config.exec",
            "required key is missing",
        ),
        (
            "modules:\n  - class: modules::observability::OtelModule\n"
            "    config: {alerts: [{name: a, metric: m, threshold: 1, action: {type: webhook}}]}\n",
            "modules[0].config.alerts[0].action.url",
            "required when type is 'webhook'",
        ),
        (
            "modules:\n  - class: modules::observability::OtelModule\n"
            "    config: {alerts: [{name: a, metric: m, threshold: 1, action: log}]}\n",
            "modules[0].config.alerts[0].action",
            "expected a mapping, got a string ('log')",
        ),
        # the file itself
        (
            "- a\n- b\n",
            "",
            "the top level must be a mapping of keys (port, modules, ...), got a list",
        ),
        ("port: 1\nport: 2\n", "line 2, column 1", "invalid YAML: duplicate key 'port'"),
        (
            "port: 1\nhost: a: b\n",
            "line 2, column 8",
            "invalid YAML: mapping values are not allowed here",
        ),
    ],
)
def test_error_messages(text: str, key_path: str, problem: str) -> None:
    err = error(text)
    assert (err.file, err.key_path, err.problem) == ("config.yaml", key_path, problem)
    assert str(err) == ": ".join(p for p in ("config.yaml", key_path, problem) if p)


def test_error_names_the_file_it_came_from(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("port: nope\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: port: expected an integer"):
        load_config(path)


def test_the_spec_example_message() -> None:
    text = API + "      cors:\n        allowed_origin: ['*']\n"
    assert str(error(text)) == (
        "config.yaml: modules[0].config.cors.allowed_origin: unknown key "
        "(did you mean 'allowed_origins'?)"
    )


# -- accepted with a warning (§1.6 table) -------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "trust_proxy",
        "request_id_header",
        "ignore_trailing_slash",
        "not_found_function",
        "middleware",
    ],
)
def test_other_version_rest_api_keys_warn(key: str) -> None:
    config = parse(API + f"      {key}: x\n")
    assert config.warnings == (
        f"config.yaml: modules[0].config.{key}: accepted for compatibility with other iii "
        "versions; it has no effect here",
    )


def test_honoured_other_version_keys_do_not_warn() -> None:
    config = parse(
        API + "      body_limit: 1024\n      cors: {allowed_headers: [x-a]}\n"
        "  - class: modules::state::StateModule\n    config:\n"
        "      adapter: {name: kv, config: {save_interval_ms: 100}}\n"
        "  - class: modules::telemetry::TelemetryModule\n    config: {enabled: false}\n"
    )
    assert config.warnings == ()
    api = config.modules[0].config
    assert isinstance(api, RestApiConfig)
    assert api.body_limit == 1024


def test_otel_stdout_exporter_warns() -> None:
    config = parse(
        "modules:\n  - class: modules::observability::OtelModule\n    config: {exporter: stdout}\n"
    )
    otel = config.modules[0].config
    assert isinstance(otel, OtelConfig)
    assert otel.exporter == "stdout"
    assert config.warnings == (
        "config.yaml: modules[0].config.exporter: 'stdout' is accepted and behaves as 'memory' "
        "with console output",
    )


def test_nesting_too_deep_for_the_yaml_parser_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid YAML: nested too deeply"):
        parse_config("modules:\n  - " + "[" * 5000 + "]" * 5000 + "\n")
