"""Admission of accepted sockets: caps per port and per address, and a descriptor reserve.

Every port the engine listens on (worker, stream; the HTTP module may use the same) admits
each accepted socket through one :class:`PortGate` before reading a byte from it. A socket
is refused when

- the engine is down to its last ``reserved_descriptors`` file descriptors
  (:class:`DescriptorReserve`): the socket is answered with a canned 503 and closed at once,
  without waiting, so refusing costs no descriptor for longer than the accept itself;
- the port already holds ``max_connections`` sockets, or this non-loopback address already
  holds ``max_connections_per_address`` of them (503 "too many connections");
- the port's own access rule refuses the peer by its address (protected mode: 403).

A refusal other than the descriptor one is answered properly: the upgrade request is read
(within :data:`REFUSAL_SECONDS`) and answered with the HTTP status and a text saying why.
Such refusals in progress have their own small budget (:data:`REFUSING_PER_PORT`); past it
a refused socket is closed at once. They never count against the port's cap, so a flood
of refused peers cannot keep admitted ones out.

Counting is synchronous (trio runs one task at a time), so a cap can never be overshot by
sockets accepted together.

Why descriptor numbers: the kernel gives every new descriptor the lowest free number. So
an accepted socket numbered at or above ``limit - reserve`` proves that every number below
is taken, and admitting peers only below that line keeps at least ``reserve`` descriptors for
everything else the engine opens (SQLite files, Redis and HTTP clients), at the cost of one
comparison per accept instead of a count of ``/proc/self/fd``.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import attrs
import trio

from iii_trio.runtime.connections.access import RefusalLog, is_loopback
from iii_trio.runtime.wire.handshake import Rejection

log = logging.getLogger("iii_trio.admission")

#: How long a refused peer has to send its request before it is closed unanswered.
REFUSAL_SECONDS = 2.0
#: Refusals being answered at once on one port; beyond that, refused sockets are closed.
REFUSING_PER_PORT = 64
#: A port's access rule by peer address (protected mode); None admits.
PeerRule = Callable[[str], "Rejection | None"]
#: A port at its cap says so at most this often (it may fill and drain many times).
CAP_LOG_SECONDS = 60.0


def raise_descriptor_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; (soft, hard) afterwards.

    Raising it costs nothing until descriptors are used, and the default soft limit (often
    1024) is what idle clients exhausted before (issue 16 item 10)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, hard, exc)
    return soft, hard


def _soft_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return _UNLIMITED if soft == resource.RLIM_INFINITY else soft


_UNLIMITED = 2**31  # no soft limit: descriptor numbers never reach this


@attrs.define
class DescriptorReserve:
    """The last ``reserved`` descriptors below the soft limit are not given to peers.
    ``limit`` is read when made; :meth:`refresh` reads it again (after raising it)."""

    reserved: int
    limit: int = attrs.field(factory=_soft_limit)
    refused: int = 0

    def refresh(self) -> None:
        self.limit = _soft_limit()

    @property
    def peer_ceiling(self) -> int:
        """Peers are admitted on descriptors numbered below this."""
        return self.limit - self.reserved

    def admits(self, fd: int) -> bool:
        return fd < self.peer_ceiling


@attrs.define(eq=False)
class PortGate:
    """The admission of one listening port (see the module docstring)."""

    name: str  # "worker port", "stream port"
    max_connections: int
    max_per_address: int  # 0: no per-address cap
    descriptors: DescriptorReserve
    refusals: RefusalLog = attrs.field(factory=RefusalLog)
    active: int = 0
    refused: int = 0
    _per_address: dict[str, int] = attrs.field(factory=dict)
    _refusing: int = 0
    _cap_logged_at: float = float("-inf")

    def screen(
        self, stream: trio.SocketStream, address: str, peer_rule: PeerRule | None = None
    ) -> Rejection | None:
        """Why this accepted socket cannot be admitted (None: it can), in order: the
        descriptor reserve, the port's access rule (``peer_rule``), the caps. No side
        effects but counting and logging the refusal."""
        descriptors = self.descriptors
        try:
            fd = stream.socket.fileno()
        except OSError:
            fd = -1
        if not descriptors.admits(fd):
            descriptors.refused += 1
            self.refused += 1
            if trio.current_time() - self._cap_logged_at >= CAP_LOG_SECONDS:
                self._cap_logged_at = trio.current_time()
                log.warning(
                    "%s: refusing connections: down to the last %d of %d descriptors "
                    "(reserved_descriptors)",
                    self.name,
                    descriptors.reserved,
                    descriptors.limit,
                )
            return OUT_OF_DESCRIPTORS
        rejection = peer_rule(address) if peer_rule is not None else None
        if rejection is not None:
            self.refused += 1
            self.refusals.refused_peer(self.name, address, "protected mode (no auth_token)")
            return rejection
        rejection = self._over_cap(address)
        if rejection is not None:
            self.refused += 1
            if trio.current_time() - self._cap_logged_at >= CAP_LOG_SECONDS:
                self._cap_logged_at = trio.current_time()
                log.warning("%s: refusing connections: %s", self.name, rejection.body.strip())
        return rejection

    def _over_cap(self, address: str) -> Rejection | None:
        if self.active >= self.max_connections:
            return Rejection(
                503,
                f"too many connections on the {self.name} (max_connections "
                f"{self.max_connections}); retry later\n",
            )
        if (
            self.max_per_address
            and self._per_address.get(address, 0) >= self.max_per_address
            and not is_loopback(address)
        ):
            return Rejection(
                503,
                f"too many connections from {address} on the {self.name} "
                f"(max_connections_per_address {self.max_per_address}); retry later\n",
            )
        return None

    async def refuse(self, stream: trio.SocketStream, rejection: Rejection) -> None:
        """Answer a refused socket and close it: properly (its request read, within
        :data:`REFUSAL_SECONDS`) while the answering budget lasts, else at once."""
        try:
            if rejection is OUT_OF_DESCRIPTORS or self._refusing >= REFUSING_PER_PORT:
                close_at_once(stream, rejection)
                return
            self._refusing += 1
            try:
                with trio.move_on_after(REFUSAL_SECONDS):
                    await _read_head(stream)
                    await stream.send_all(http_answer(rejection))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            finally:
                self._refusing -= 1
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    @contextmanager
    def admitted(self, address: str) -> Iterator[None]:
        """Count a socket in for the block's duration (call :meth:`check` first)."""
        self.active += 1
        counted = self.max_per_address > 0 and not is_loopback(address)
        if counted:
            self._per_address[address] = self._per_address.get(address, 0) + 1
        try:
            yield
        finally:
            self.active -= 1
            if counted:
                left = self._per_address[address] - 1
                if left:
                    self._per_address[address] = left
                else:
                    del self._per_address[address]

    def connections_from(self, address: str) -> int:
        return self._per_address.get(address, 0)

    def statistics(self) -> dict[str, int]:
        return {
            "connections": self.active,
            "max_connections": self.max_connections,
            "refused": self.refused,
        }


OUT_OF_DESCRIPTORS = Rejection(
    503, "the engine is out of file descriptors for new connections; retry later\n"
)


def http_answer(rejection: Rejection) -> bytes:
    """A complete ``connection: close`` HTTP/1.1 response with the rejection's text."""
    body = rejection.body.encode()
    lines = [
        f"HTTP/1.1 {rejection.status} {_REASONS.get(rejection.status, 'Refused')}",
        "content-type: text/plain; charset=utf-8",
        f"content-length: {len(body)}",
        *(["retry-after: 1"] if rejection.status == 503 else []),
        "connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


_REASONS = {401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}
#: The most of a refused peer's request head that is read before answering it.
_HEAD_LIMIT = 16384


async def _read_head(stream: trio.SocketStream) -> None:
    """Read the request head (up to its blank line, at most :data:`_HEAD_LIMIT` bytes), so
    closing after the answer sends no reset that could destroy the answer in flight."""
    total, tail = 0, b""
    while total < _HEAD_LIMIT:
        data = bytes(await stream.receive_some(4096))
        if not data:
            return
        total += len(data)
        window = tail + data
        if b"\r\n\r\n" in window:
            return
        tail = window[-3:]


def close_at_once(stream: trio.SocketStream, rejection: Rejection) -> None:
    """Answer ``rejection`` with what the socket takes right now and shut it; never waits
    (the descriptor reserve's refusal, and refusals past the answering budget). The caller
    closes the stream. What already arrived is read first, so closing sends no reset for it.
    """
    try:
        fd = stream.socket.fileno()
        try:
            while os.read(fd, 65536):  # trio's sockets are non-blocking: this never waits
                pass
        except OSError:  # nothing (more) to read
            pass
        os.write(fd, http_answer(rejection))
        stream.socket.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def peer_address(stream: trio.SocketStream) -> tuple[str, int]:
    """(address, port) of the peer; ("unknown", 0) when the socket is already gone."""
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return "unknown", 0
    if isinstance(peer, tuple):
        return str(peer[0]), int(peer[1])
    return str(peer), 0
