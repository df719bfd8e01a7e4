"""Module kinds a config may name that this build does not contain.

Their settings are still validated, so a config written for the reference engine fails on a
typo, not on a missing feature; the engine then logs each one as "not available in this
build" and starts without it (see :mod:`iii_trio.runtime.modules.catalog`).
"""

from __future__ import annotations

import attrs

from iii_trio.runtime.builtins.config import WorkerConfig
from iii_trio.runtime.config.schema import POSITIVE, Choice, limits


@attrs.frozen(kw_only=True)
class SecurityConfig:
    url_allowlist: tuple[str, ...] = ("*",)
    block_private_ips: bool = True
    require_https: bool = True


@attrs.frozen(kw_only=True)
class HttpFunctionsConfig:
    """HttpFunctionsModule (§11)."""

    security: SecurityConfig = attrs.field(factory=SecurityConfig)


@attrs.frozen(kw_only=True)
class ExecConfig:
    """ExecModule (§11): commands run with ``sh -c``, restarted when watched files change."""

    exec: tuple[str, ...] = attrs.field(metadata=limits(min_items=1))
    watch: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class ExposeEntry:
    local_function: str
    remote_function: str | None = None


@attrs.frozen(kw_only=True)
class ForwardEntry:
    local_function: str
    remote_function: str
    timeout_ms: int | None = attrs.field(default=None, metadata=POSITIVE)


@attrs.frozen(kw_only=True)
class BridgeClientConfig:
    """BridgeClientModule (§11). ``url`` ``None``: ``$III_URL``, else ``ws://0.0.0.0:49134``."""

    url: str | None = None
    service_id: str | None = None
    service_name: str | None = None
    expose: tuple[ExposeEntry, ...] = ()
    forward: tuple[ForwardEntry, ...] = ()


KV_SERVER_REMOVED = (
    "modules::kv_server::KvServer is not provided (it existed only briefly in the seed era); "
    "use modules::state::StateModule"
)


HTTP_FUNCTIONS = Choice(
    "http_functions", HttpFunctionsConfig, ("modules::http_functions::HttpFunctionsModule",)
)
EXEC = Choice("exec", ExecConfig, ("modules::shell::ExecModule",))
BRIDGE_CLIENT = Choice(
    "bridge_client", BridgeClientConfig, ("modules::bridge_client::BridgeClientModule",)
)
KV_SERVER = Choice(
    "kv_server", WorkerConfig, ("modules::kv_server::KvServer",), removed=KV_SERVER_REMOVED
)
