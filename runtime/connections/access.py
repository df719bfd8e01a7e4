"""Who may open a socket on the engine's ports: protected mode and the shared token.

Two rules, applied to every upgraded socket of the worker port (``/``, ``/otel``,
``/ws/channels/<id>``) and of the stream port, and (``/metrics`` only) to the engine's
endpoints on the HTTP port:

- **Protected mode** (``protected_mode: true``, the default, in the spirit of Redis's): while
  no ``auth_token`` is set, only loopback peers are admitted. Anyone else gets HTTP 403 with
  :data:`PROTECTED_MODE_TEXT`, which says how to open up. The check needs only the peer's
  address, so it runs as soon as a socket is accepted, before its request is read.
- **The token** (``auth_token``, D13): ``Authorization: Bearer <token>``, compared in constant
  time, else HTTP 401. Channel sockets are authorised by their access key instead (spec §3.2).

:class:`AccessPolicy` is the decision, pure and cheap; :class:`RefusalLog` says once per
peer address (a bounded number of them) that a peer was refused, so a scan of the port
cannot flood the log.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable

import attrs

from iii_trio.runtime.wire.handshake import HandshakeRequest, Rejection

log = logging.getLogger("iii_trio.access")

PROTECTED_MODE_TEXT = (
    "iii-trio is running in protected mode: no auth_token is set, so only connections from "
    "loopback (127.0.0.1, ::1) are accepted. To accept other hosts, either set auth_token in "
    "the engine's config (clients then send 'Authorization: Bearer <token>'), or, on a "
    "network you trust, set 'protected_mode: false'.\n"
)
UNAUTHORIZED_TEXT = "unauthorized: send 'Authorization: Bearer <auth_token>'\n"

#: Peer addresses remembered by :class:`RefusalLog` (each is logged once).
REFUSAL_LOG_ADDRESSES = 1024


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback (``::ffff:127.0.0.1``); anything that is
    not an IP address (``unknown``) is not loopback."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def bearer_matches(header: bytes | str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    if header is None:
        return False
    if isinstance(header, str):
        header = header.encode("latin-1", "replace")
    return hmac.compare_digest(header.strip(), b"Bearer " + token.encode())


@attrs.frozen
class AccessPolicy:
    """The engine's ``auth_token`` and ``protected_mode``, and what follows from them."""

    auth_token: str | None = None
    protected_mode: bool = True

    @property
    def protected(self) -> bool:
        """Protected mode is in force: it is on and no token is set."""
        return self.protected_mode and not self.auth_token

    def peer_refusal(self, address: str) -> Rejection | None:
        """HTTP 403 for a non-loopback peer while protected; None: go on."""
        if self.protected and not is_loopback(address):
            return Rejection(403, PROTECTED_MODE_TEXT)
        return None

    def token_refusal(self, request: HandshakeRequest) -> Rejection | None:
        """HTTP 401 when a token is set and the upgrade does not carry it; None: go on."""
        token = self.auth_token
        if token and not bearer_matches(request.header(b"authorization"), token):
            return Rejection(401, UNAUTHORIZED_TEXT)
        return None

    def endpoint_refusal(self, address: str, authorization: str | None) -> Rejection | None:
        """The engine's own HTTP endpoints (``/metrics``): with a token, the token (401);
        in protected mode, loopback peers only (403); otherwise open."""
        token = self.auth_token
        if token:
            return (
                None if bearer_matches(authorization, token) else Rejection(401, UNAUTHORIZED_TEXT)
            )
        return self.peer_refusal(address)

    def describe_endpoints(self) -> str:
        """Who may read the engine's own HTTP endpoints, for the startup log."""
        if self.auth_token:
            return "/metrics needs auth_token"
        if self.protected_mode:
            return "/metrics loopback only (protected mode)"
        return "/metrics open"

    def describe(self) -> str:
        """How peers are admitted, for the startup log."""
        if self.auth_token:
            return "auth_token required"
        if self.protected_mode:
            return "protected mode: loopback peers only (set auth_token or protected_mode: false)"
        return "OPEN to every peer that can reach it (no auth_token, protected_mode: false)"


@attrs.define
class RefusalLog:
    """Logs a refused peer once per address, for at most ``capacity`` addresses; counts all.

    ``capacity`` bounds both the memory and the log lines a port scan can cause: past it,
    one more line says that further refusals are counted, not logged."""

    capacity: int = REFUSAL_LOG_ADDRESSES
    emit: Callable[[str], None] = log.warning
    refused: int = 0
    _seen: set[str] = attrs.field(factory=set)
    _full_reported: bool = False

    def refused_peer(self, port_name: str, address: str, reason: str) -> None:
        self.refused += 1
        if address in self._seen:
            return
        if len(self._seen) >= self.capacity:
            if not self._full_reported:
                self._full_reported = True
                self.emit(
                    f"{port_name}: {self.capacity} peer addresses refused; further refusals "
                    "are counted, not logged"
                )
            return
        self._seen.add(address)
        self.emit(f"{port_name}: refused {address}: {reason}")


@attrs.frozen
class ExposedPort:
    """A port the engine listens on, for the startup log: where, and who is admitted."""

    name: str  # "worker port", "stream port", "http port"
    host: str
    port: int
    admission: str

    @property
    def reach(self) -> str:
        if self.host in ("0.0.0.0", "::", ""):
            return "all interfaces"
        if self.host == "localhost" or is_loopback(self.host):
            return "loopback only"
        return f"interface {self.host}"

    def describe(self) -> str:
        return f"{self.name} {self.host}:{self.port} ({self.reach}): {self.admission}"
