"""Hypothesis against the config loader: structured configs with random keys, values and
module entries, mutations of the shipped config.yaml, random text and YAML oddities
(aliases, tags, placeholders, deep nesting). Loading either succeeds or raises one
ConfigError whose message names the file; never another exception. A few invalid configs
also go through ``iii-trio serve --config`` as a process: exit code 2, one ``iii-trio:``
message on stderr, never a traceback."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from iii_trio.runtime.config.schema import ConfigError
from iii_trio.runtime.engine import parse_config
from iii_trio.runtime.modules.catalog import is_available, startup_problem
from tests.conformance.conftest import serve_command
from tests.reliability.fuzz_settings import fuzz_settings
from tests.reliability.support import record

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"
IN_PROCESS_EXAMPLES = 400
PROCESS_EXAMPLES = 6
tried: Counter[str] = Counter()
outcomes: Counter[str] = Counter()

scalar = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["0", "-1", "65536", "yes", "~", "0x10", "1e9", "${NOPE}", "${A:-3}"])
)
value = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
KEYS = [
    "port", "host", "default_timeout", "max_message_size", "max_in_flight_per_worker",
    "auth_token", "adapter", "store_method", "file_path", "cors", "allowed_origins",
    "queue_configs", "type", "message_group_field", "concurrency", "max_attempts", "backoff_ms",
    "redis_url", "cron", "alerts", "sampling_ratio", "body_limit", "concurrency_request_limit",
]  # fmt: skip
CLASSES = [
    "modules::api::RestApiModule", "modules::state::StateModule", "modules::stream::StreamModule",
    "modules::queue::QueueModule", "modules::pubsub::PubSubModule", "modules::cron::CronModule",
    "modules::observability::OtelModule", "modules::shell::ExecModule",
    "modules::state::adapters::KvStore", "modules::queue::BuiltinQueueAdapter",
    "modules::state::adapters::RedisAdapter", "iii-http", "iii-state", "nope::Module",
]  # fmt: skip
section = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), value, max_size=5)
adapter = st.fixed_dictionaries(
    {"class": st.sampled_from(CLASSES) | st.text(max_size=10)}, optional={"config": section}
)
entry = st.fixed_dictionaries(
    {"class": st.sampled_from(CLASSES) | st.text(max_size=12)},
    optional={
        "config": section | st.dictionaries(st.just("adapter"), adapter, min_size=1) | value,
        "name": st.text(max_size=8),
    },
)
top = st.fixed_dictionaries(
    {},
    optional={
        "port": value,
        "default_timeout": value,
        "max_message_size": value,
        "max_in_flight_per_worker": value,
        "auth_token": value,
        "modules": st.lists(entry, max_size=4) | value,
        "workers": st.lists(entry, max_size=2) | value,
        "extra": value,
    },
)


@st.composite
def mutated_repo_config(draw: st.DrawFn) -> str:
    text = list(REPO_CONFIG.read_text())
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text) - 1))
        op = draw(st.sampled_from(["replace", "delete", "insert"]))
        char = draw(st.sampled_from(list(" :-[]{}#&*!%@`'\"\t\n|>,?0a")) | st.characters())
        if op == "replace":
            text[at] = char
        elif op == "delete":
            del text[at : at + draw(st.integers(1, 20))]
        else:
            text.insert(at, char)
    return "".join(text)


ODDITIES = [
    "port: &p 1\ndefault_timeout: *p\n",
    "a: &a [1, 1, 1, 1]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nmodules: [*c, *c]\n",
    "port: !!python/object/apply:os.system ['true']\n",
    "port: !!binary aGVsbG8=\n",
    "<<: {port: 1}\n",
    "? [complex, key]\n: 1\n",
    "port: ${PORT}\n",
    "port: ${PORT:-}\n",
    "# ${IN_A_COMMENT}\nport: 1\n",
    "modules:\n  - " + "[" * 700 + "]" * 700 + "\n",
    "port: 1\n" * 3,
    "\ufeffport: 1\n",
    "port: 1\x00\n",
    "---\nport: 1\n---\nport: 2\n",
    "",
    "modules: null\nworkers: null\n",
]

config_text = st.one_of(
    top.map(lambda d: ("structured", yaml.safe_dump(d, allow_unicode=True))),
    mutated_repo_config().map(lambda t: ("mutated config.yaml", t)),
    st.text(max_size=300).map(lambda t: ("random text", t)),
    st.sampled_from(ODDITIES).map(lambda t: ("yaml oddity", t)),
)


def load(text: str) -> str:
    """'ok', or the ConfigError / startup problem message; any other exception escapes."""
    try:
        config = parse_config(text, source="fuzz.yaml", environ={"A": "1"})
    except ConfigError as error:
        message = str(error)
        assert message.startswith("fuzz.yaml"), message
        assert "Traceback" not in message
        return message
    for module in config.modules:
        if is_available(module):
            problem = startup_problem(module)
            if problem is not None:
                return problem
    return "ok"


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    record("fuzz_config", inputs=sum(tried.values()), by_kind=dict(tried), **outcomes)


@fuzz_settings(IN_PROCESS_EXAMPLES)
@given(config_text)
def test_the_loader_only_ever_raises_a_clear_config_error(case: tuple[str, str]) -> None:
    kind, text = case
    tried[kind] += 1
    outcomes["loaded" if load(text) == "ok" else "refused"] += 1


@fuzz_settings(PROCESS_EXAMPLES)
@given(config_text)
def test_serve_exits_2_with_one_message_on_an_invalid_config(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[str, str]
) -> None:
    kind, text = case
    problem = load(text)
    assume(problem != "ok")  # a valid config would start an engine
    tried[f"{kind} (process)"] += 1
    path: Path = tmp_path_factory.mktemp("fuzz-config") / "bad.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    done = subprocess.run(
        [*serve_command(), "--config", str(path)],
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    stderr: Any = done.stderr.decode(errors="replace")
    assert done.returncode == 2, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.startswith("iii-trio: "), stderr
    outcomes["process exit 2"] += 1
