"""Free loopback ports for servers the tests start as processes."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on right now (another process may still take it before the
    server binds: callers that start servers retry on "address in use")."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
