"""Settings of the RestApiModule (spec/modules.md §3.1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import attrs

from iii_trio.runtime.config.schema import NO_EFFECT, NON_NEGATIVE, PORT, POSITIVE, Choice


@attrs.frozen(kw_only=True)
class CorsConfig:
    """``None`` for a list means that part is permissive."""

    allowed_origins: tuple[str, ...] | None = None
    allowed_methods: tuple[str, ...] | None = None
    allowed_headers: tuple[str, ...] | None = None


@attrs.frozen(kw_only=True)
class RestApiConfig:
    """RestApiModule (§3.1). ``cors`` ``None``: fully permissive."""

    ACCEPTED: ClassVar[Mapping[str, str | None]] = dict.fromkeys(
        (
            "trust_proxy",
            "request_id_header",
            "ignore_trailing_slash",
            "not_found_function",
            "middleware",
        ),
        NO_EFFECT,
    )

    port: int = attrs.field(default=3111, metadata=PORT)
    host: str = "0.0.0.0"
    default_timeout: int = attrs.field(default=30000, metadata=POSITIVE)
    concurrency_request_limit: int = attrs.field(default=1024, metadata=POSITIVE)
    body_limit: int = attrs.field(default=16777216, metadata=POSITIVE)
    cors: CorsConfig | None = None
    #: sockets open at once on the HTTP port, and from one non-loopback address (0: no cap;
    #: a reverse proxy in front of the engine is one address)
    max_connections: int = attrs.field(default=4096, metadata=POSITIVE)
    max_connections_per_address: int = attrs.field(default=0, metadata=NON_NEGATIVE)


CHOICE = Choice("rest_api", RestApiConfig, ("modules::api::RestApiModule",), ("iii-http",))
