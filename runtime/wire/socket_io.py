"""The one place that reads from and writes to a socket's file descriptor.

Both sides of the WebSocket (:mod:`iii_trio.runtime.wire.websocket`) go around two costs of
trio's ``SocketStream`` on their hot path, here and nowhere else:

- Reads. ``SocketStream.receive_some`` always tries the read first and waits for readability
  only when it fails. A WebSocket peer that reads everything the kernel holds (64 KiB reads)
  has just drained the socket, so that first try of the next read nearly always fails: a
  wasted system call and exception, plus a trip through the scheduler after every read that
  did succeed. After a read that came back short, :class:`SocketReader` waits for
  readability first, then reads once.
- Writes. Sending a frame through a writer task costs a task switch per frame. A quiet
  connection writes its frame at once with :func:`try_write`, which never waits: it writes
  what the kernel takes now and says how much that was; the caller queues the rest.

Other streams (memory streams in tests, TLS) have no descriptor: they read the usual way,
and :func:`try_write` writes nothing to them. Trio only, no wsproto.
"""

from __future__ import annotations

import os

import trio


def socket_fd(stream: trio.abc.Stream) -> int | None:
    """The file descriptor under ``stream``, or None when it is not a TCP socket stream."""
    return stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None


def try_write(fd: int | None, data: bytes) -> int:
    """Write what the socket takes right now, without waiting; the number of bytes written.

    0 when the socket's buffer is full, the socket broke, or there is no descriptor: the
    caller hands the rest to a task that waits, and that task meets and reports a broken
    socket. Nothing else may be writing to the socket meanwhile (frames would interleave).
    """
    if fd is None:
        return 0
    try:
        return os.write(fd, data)
    except OSError:  # would block (BlockingIOError), or reset / broken pipe
        return 0


class SocketReader:
    def __init__(self, stream: trio.abc.Stream, size: int) -> None:
        self._stream = stream
        self._size = size
        # Raw reads need the socket's file descriptor; other streams read the usual way.
        self._fd = socket_fd(stream)
        self._drained = False  # the last read came back short: the socket is empty now
        self.bytes_received = 0  # the keepalive's sign of life (runtime/connections)

    async def receive_some(self) -> bytes:
        """Up to ``size`` bytes; ``b""`` when the peer closed or the connection broke."""
        fd = self._fd
        if fd is None:
            try:
                data = bytes(await self._stream.receive_some(self._size))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
            self.bytes_received += len(data)
            return data
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
            self.bytes_received += len(data)
            return data
