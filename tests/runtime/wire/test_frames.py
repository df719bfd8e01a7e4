"""The client-frame parser (RFC 6455 §5) on its own: bytes in, messages out."""

from __future__ import annotations

import os
import struct

import pytest

from iii_trio.runtime.wire.frames import (
    INVALID_PAYLOAD,
    MESSAGE_TOO_BIG,
    PROTOCOL_ERROR,
    Close,
    FrameParser,
    Ping,
    masked_frame,
    unmask,
)


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """A masked frame as a client sends it."""
    mask = os.urandom(4)
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def parse_all(data: bytes, *, limit: int = 1 << 20) -> tuple[list[object], FrameParser]:
    parser = FrameParser(limit)
    return parser.feed(data), parser


def test_unmask_is_xor_with_the_repeated_key() -> None:
    mask = b"\x01\x02\x03\x04"
    for size in (0, 1, 3, 4, 5, 1000, 2047, 2048, 2049, 70_001):
        payload = os.urandom(size)
        expected = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert unmask(payload, mask) == expected


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_messages_of_every_length_encoding(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)
    data = client_frame(0x1, text.encode())
    events, parser = parse_all(data)
    assert events == [text]
    assert parser.error is None
    binary = os.urandom(size)
    assert parse_all(client_frame(0x2, binary))[0] == [binary]


def test_input_split_at_every_byte_gives_the_same_messages() -> None:
    data = client_frame(0x1, b"hello") + client_frame(0x9, b"p") + client_frame(0x2, b"\x00" * 300)
    for split in range(len(data) + 1):
        parser = FrameParser(1 << 20)
        events = parser.feed(data[:split]) + parser.feed(data[split:])
        assert events == ["hello", Ping(b"p"), b"\x00" * 300], split


def test_fragments_join_and_control_frames_may_come_between() -> None:
    data = (
        client_frame(0x1, b"ab", fin=False)
        + client_frame(0x9, b"ping")
        + client_frame(0x0, "c€".encode(), fin=False)
        + client_frame(0xA, b"pong is ignored")
        + client_frame(0x0, b"d")
    )
    assert parse_all(data)[0] == [Ping(b"ping"), "abc€d"]


def test_a_utf8_character_split_across_fragments_is_fine() -> None:
    euro = "€".encode()
    data = client_frame(0x1, euro[:1], fin=False) + client_frame(0x0, euro[1:])
    assert parse_all(data)[0] == ["€"]


def test_close_carries_code_and_reason_and_ends_parsing() -> None:
    data = (
        client_frame(0x1, b"before")
        + client_frame(0x8, struct.pack("!H", 1000) + b"bye")
        + client_frame(0x1, b"after")
    )
    assert parse_all(data)[0] == ["before", Close(1000, "bye")]
    assert parse_all(client_frame(0x8, b""))[0] == [Close(1005, "")]


@pytest.mark.parametrize(
    ("data", "code", "reason"),
    [
        (client_frame(0x1, b"x", rsv=4), PROTOCOL_ERROR, "reserved bits"),
        (b"\x81\x01x", PROTOCOL_ERROR, "must be masked"),
        (client_frame(0x3, b""), PROTOCOL_ERROR, "unknown opcode"),
        (client_frame(0x9, b"p", fin=False), PROTOCOL_ERROR, "fragmented control"),
        (client_frame(0x9, b"p" * 126), PROTOCOL_ERROR, "over 125 bytes"),
        (client_frame(0x0, b"x"), PROTOCOL_ERROR, "continuation frame without"),
        (
            client_frame(0x1, b"a", fin=False) + client_frame(0x1, b"b"),
            PROTOCOL_ERROR,
            "before the previous one finished",
        ),
        (client_frame(0x1, b"\xff\xfe"), INVALID_PAYLOAD, "not valid UTF-8"),
        (client_frame(0x8, b"\x03"), PROTOCOL_ERROR, "1-byte payload"),
        (client_frame(0x8, struct.pack("!H", 1005)), PROTOCOL_ERROR, "invalid close code"),
        (client_frame(0x8, struct.pack("!H", 999)), PROTOCOL_ERROR, "invalid close code"),
        (client_frame(0x8, struct.pack("!H", 1000) + b"\xff"), INVALID_PAYLOAD, "not UTF-8"),
    ],
)
def test_protocol_violations_name_the_close_code(data: bytes, code: int, reason: str) -> None:
    events, parser = parse_all(client_frame(0x1, b"ok") + data + client_frame(0x1, b"late"))
    assert events == ["ok"]  # what came before is delivered, nothing after
    assert parser.error is not None
    assert parser.error.code == code
    assert reason in parser.error.reason
    assert parser.feed(client_frame(0x1, b"more")) == []


def test_an_oversized_message_is_refused_from_its_header() -> None:
    parser = FrameParser(1000)
    # Only the header of a 1 MiB frame arrives: refused before the payload is buffered.
    header = struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 20) + b"mask"
    assert parser.feed(header) == []
    assert parser.error is not None
    assert parser.error.code == MESSAGE_TOO_BIG


def test_fragments_count_against_the_limit_together() -> None:
    data = client_frame(0x2, b"x" * 600, fin=False) + client_frame(0x0, b"y" * 600)
    events, parser = parse_all(data, limit=1000)
    assert events == []
    assert parser.error is not None
    assert parser.error.code == MESSAGE_TOO_BIG
    assert parse_all(client_frame(0x2, b"x" * 1000), limit=1000)[0] == [b"x" * 1000]


def test_a_client_parser_takes_unmasked_frames_and_refuses_masked_ones() -> None:
    server_frame = b"\x81\x05hello"
    parser = FrameParser(1 << 20, masked=False)
    assert parser.feed(server_frame) == ["hello"]
    assert parser.feed(client_frame(0x1, b"masked")) == []
    assert parser.error is not None
    assert parser.error.code == PROTOCOL_ERROR
    assert "unmasked" in parser.error.reason


@pytest.mark.parametrize("size", [0, 125, 126, 65536])
def test_masked_frames_built_for_clients_parse_on_the_server(size: int) -> None:
    payload = os.urandom(size)
    first = masked_frame(0x2, payload)
    second = masked_frame(0x2, payload)
    assert first != second or size == 0  # a fresh key for every frame
    assert parse_all(first + second)[0] == [payload, payload]
