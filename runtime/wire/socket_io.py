"""Reads from a trio TCP stream that skip the read bound to fail.

``SocketStream.receive_some`` always tries the read first and waits for readability only
when it fails. A WebSocket peer that reads everything the kernel holds (64 KiB reads) has
just drained the socket, so that first try of the next read nearly always fails: a wasted
system call and exception, plus a trip through the scheduler after every read that did
succeed. After a read that came back short, this reader waits for readability first, then
reads once. Used by the engine's server side and by the trio SDK (trio only, no wsproto).
"""

from __future__ import annotations

import os

import trio


class SocketReader:
    def __init__(self, stream: trio.abc.Stream, size: int) -> None:
        self._stream = stream
        self._size = size
        # Raw reads need the socket's file descriptor; other streams read the usual way.
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None
        self._drained = False  # the last read came back short: the socket is empty now

    async def receive_some(self) -> bytes:
        """Up to ``size`` bytes; ``b""`` when the peer closed or the connection broke."""
        fd = self._fd
        if fd is None:
            try:
                return bytes(await self._stream.receive_some(self._size))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
        while True:
            try:
                if self._drained:
                    await trio.lowlevel.wait_readable(fd)
                else:
                    await trio.lowlevel.checkpoint()  # a read is always a checkpoint
                data = os.read(fd, self._size)
            except BlockingIOError:
                self._drained = True  # readable was a false alarm: wait again
                continue
            except (OSError, trio.ClosedResourceError):  # reset, or closed by this side
                return b""
            self._drained = len(data) < self._size
            return data
