"""WebSocket frames after the upgrade, without wsproto (RFC 6455 §5).

wsproto does the HTTP upgrade; after it, the engine (and the trio SDK) read and write frames
here. wsproto's generic frame machinery (a generator per connection, an event object per
frame, a pure-Python masker) cost about a tenth of the engine's CPU per routed call; this
module does the one job each side needs: frames in, whole messages out, with the checks
RFC 6455 requires (a server gets masked frames only, a client unmasked ones). Sans-IO: feed
bytes, take messages.

Extensions are never negotiated (permessage-deflate is declined), so RSV bits are errors.
"""

from __future__ import annotations

import functools
import os
import struct

import attrs

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_DATA_OPCODES = (OP_CONTINUATION, OP_TEXT, OP_BINARY)
_CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)

PROTOCOL_ERROR = 1002
INVALID_PAYLOAD = 1007
MESSAGE_TOO_BIG = 1009


class FrameError(Exception):
    """The peer broke the protocol; the connection must close with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@attrs.frozen
class Ping:
    payload: bytes


@attrs.frozen
class Close:
    code: int
    reason: str


Event = str | bytes | Ping | Close  # str: a text message, bytes: a binary message


# Above this size, XOR through byte tables beats one big-integer XOR (measured: 140 µs
# against 290 µs for 64 KiB; below about 1 KiB the integer is faster).
_TABLE_UNMASK_FROM = 2048


@functools.cache
def _xor_table(key: int) -> bytes:
    return bytes(b ^ key for b in range(256))


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the repeated 4-byte key (masking and unmasking are the same operation)."""
    size = len(payload)
    if size < _TABLE_UNMASK_FROM:
        if size == 0:
            return payload
        key = (mask * (size // 4 + 1))[:size]
        value = int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")
        return value.to_bytes(size, "big")
    # Every 4th byte shares a key byte: translate the four strided slices.
    out = bytearray(size)
    for i in range(4):
        out[i::4] = payload[i::4].translate(_xor_table(mask[i]))
    return bytes(out)


def frame_header(opcode: int, length: int, *, masked: bool = False) -> bytes:
    """The header of one final frame carrying ``length`` payload bytes."""
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return bytes((0x80 | opcode, mask_bit | length))
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, mask_bit | 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, mask_bit | 127, length)


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One final frame as a client must send it: masked with a fresh random key."""
    mask = os.urandom(4)
    return frame_header(opcode, len(payload), masked=True) + mask + unmask(payload, mask)


def _valid_close_code(code: int) -> bool:
    """Codes a peer may send (RFC 6455 §7.4; 1012-1014 as registered since)."""
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


def _close_event(payload: bytes) -> Close:
    if not payload:
        return Close(1005, "")  # no status code given
    if len(payload) == 1:
        raise FrameError(PROTOCOL_ERROR, "close frame with a 1-byte payload")
    (code,) = struct.unpack_from("!H", payload)
    if not _valid_close_code(code):
        raise FrameError(PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(INVALID_PAYLOAD, "close reason is not UTF-8") from None
    return Close(code, reason)


class FrameParser:
    """Feed bytes with :meth:`feed`; it returns the complete events they finish.

    A protocol violation stops parsing for good: ``feed`` returns the events before it and
    sets :attr:`error`, which says how to close the connection.
    """

    def __init__(self, max_message_size: int, *, masked: bool = True) -> None:
        self.max_message_size = max_message_size
        # True on a server (client frames are masked), False on a client.
        self.masked = masked
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._fragment_opcode: int | None = None
        self._fragment_size = 0
        self.error: FrameError | None = None

    def feed(self, data: bytes) -> list[Event]:
        if self.error is not None:
            return []
        events: list[Event] = []
        try:
            self._parse(data, events)
        except FrameError as exc:
            self.error = exc
        return events

    def _parse(self, data: bytes, events: list[Event]) -> None:
        buffer = self._buffer + data if self._buffer else data
        pos = 0
        end = len(buffer)
        while end - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                if end - pos < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, pos + 2)
                header = 4
            elif length == 127:
                if end - pos < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, pos + 2)
                header = 10
            self._check_header(first, second, length)
            if self.masked:
                total = header + 4 + length
                if end - pos < total:
                    break
                mask = buffer[pos + header : pos + header + 4]
                payload = unmask(buffer[pos + header + 4 : pos + total], mask)
            else:
                total = header + length
                if end - pos < total:
                    break
                payload = buffer[pos + header : pos + total]
            pos += total
            event = self._frame(first & 0x80, first & 0x0F, payload)
            if event is not None:
                events.append(event)
                if isinstance(event, Close):
                    pos = end  # nothing after a Close is read
                    break
        self._buffer = buffer[pos:]

    def _check_header(self, first: int, second: int, length: int) -> None:
        opcode = first & 0x0F
        if first & 0x70:
            raise FrameError(PROTOCOL_ERROR, "reserved bits set (no extension was negotiated)")
        if bool(second & 0x80) != self.masked:
            side = "client frames must be masked" if self.masked else "server frames are unmasked"
            raise FrameError(PROTOCOL_ERROR, side)
        if opcode in _CONTROL_OPCODES:
            if not first & 0x80:
                raise FrameError(PROTOCOL_ERROR, "fragmented control frame")
            if length > 125:
                raise FrameError(PROTOCOL_ERROR, "control frame payload over 125 bytes")
        elif opcode not in _DATA_OPCODES:
            raise FrameError(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        elif self._fragment_size + length > self.max_message_size:
            # Refused from the header, before its payload is buffered.
            raise FrameError(MESSAGE_TOO_BIG, f"message larger than {self.max_message_size}")

    def _frame(self, fin: int, opcode: int, payload: bytes) -> Event | None:
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return None
        if opcode == OP_CLOSE:
            return _close_event(payload)
        if opcode == OP_CONTINUATION:
            if self._fragment_opcode is None:
                raise FrameError(PROTOCOL_ERROR, "continuation frame without a message")
        elif self._fragment_opcode is not None:
            raise FrameError(PROTOCOL_ERROR, "new message before the previous one finished")
        if not fin:
            if opcode != OP_CONTINUATION:
                self._fragment_opcode = opcode
            self._fragments.append(payload)
            self._fragment_size += len(payload)
            return None
        if opcode == OP_CONTINUATION:
            self._fragments.append(payload)
            payload = b"".join(self._fragments)
            assert self._fragment_opcode is not None
            opcode = self._fragment_opcode
            self._fragments, self._fragment_opcode, self._fragment_size = [], None, 0
        if opcode == OP_BINARY:
            return payload
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError(INVALID_PAYLOAD, "text message is not valid UTF-8") from None
