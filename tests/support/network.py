"""Peers that are not on loopback, for the tests of protected mode and per-address caps.

A socket bound to one of this machine's own non-loopback addresses (eth0's, say) and
connected to an engine listening on 0.0.0.0 reaches it from that address: the engine sees a
non-loopback peer, exactly as it would see another host, without a second machine, network
namespaces or root. :func:`non_loopback_ipv4` finds such an address (None when the machine
has none, e.g. a container with loopback only: the tests that need it are skipped then).
"""

from __future__ import annotations

import fcntl
import functools
import socket
import struct

import pytest
import trio

from iii_trio.runtime.wire.handshake import upgrade
from iii_trio.runtime.wire.websocket import ClientWebSocket

_SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address


@functools.cache
def non_loopback_ipv4() -> str | None:
    """The IPv4 address of the first interface that has one and is not loopback, if it can
    be bound to; None otherwise."""
    for _, name in socket.if_nameindex():
        if name == "lo":
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                packed = fcntl.ioctl(
                    probe.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15])
                )
            except OSError:
                continue  # no IPv4 address on this interface
            address = socket.inet_ntoa(packed[20:24])
            if address.startswith("127."):
                continue
            try:
                probe.bind((address, 0))
            except OSError:
                continue
            return address
    return None


def require_non_loopback() -> str:
    address = non_loopback_ipv4()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    return address


async def http_upgrade(
    address: str,
    port: int,
    path: str = "/",
    headers: dict[str, str] | None = None,
    *,
    source: str | None = None,
) -> tuple[int, str]:
    """(status, body) of the engine's answer to a WebSocket upgrade of ``path`` sent from
    ``source`` (a local address, e.g. :func:`non_loopback_ipv4`) to ``address:port``; 101
    and "" when it upgraded."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {address}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    stream = await trio.open_tcp_stream(address, port, local_address=source)
    try:
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = b""
        with trio.fail_after(10):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                response += chunk
                head, _, body = response.partition(b"\r\n\r\n")
                if _ and (b" 101 " in head.split(b"\r\n")[0] or _complete(head, body)):
                    break
    finally:
        await stream.aclose()
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, "" if status == 101 else body.decode()  # after a 101: frames, not text


def _complete(head: bytes, body: bytes) -> bool:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


async def open_websocket(
    address: str,
    port: int,
    path: str = "/",
    headers: dict[str, str] | None = None,
    *,
    source: str | None = None,
) -> ClientWebSocket:
    """An upgraded client WebSocket from ``source`` (the engine's own client transport);
    raises ``HandshakeRejected`` when the engine answers with an HTTP status."""
    stream = await trio.open_tcp_stream(address, port, local_address=source)
    try:
        received = await upgrade(stream, f"{address}:{port}", path, list((headers or {}).items()))
    except BaseException:
        await stream.aclose()
        raise
    return ClientWebSocket(stream, received)
