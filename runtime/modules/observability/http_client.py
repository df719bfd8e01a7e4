"""A minimal HTTP/1.1 client on h11 for the module's outbound POSTs (OTLP export, alert
webhooks): one request per connection, JSON body, the status code back."""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import attrs
import h11
import trio

# What a failed request raises: the caller counts it and carries on.
REQUEST_ERRORS = (OSError, trio.TooSlowError, h11.ProtocolError, ssl.SSLError)


@attrs.frozen
class Target:
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return cls(parts.scheme, parts.hostname, port, path)

    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


async def post_json(target: Target, path: str, body: bytes) -> int:
    """POST ``body`` to ``path`` on ``target``'s host; the response status. The caller
    bounds the time (``trio.fail_after``)."""
    stream: trio.abc.Stream = await trio.open_tcp_stream(target.host, target.port)
    if target.scheme == "https":
        context = ssl.create_default_context()
        stream = trio.SSLStream(stream, context, server_hostname=target.host)
    async with stream:
        http = h11.Connection(h11.CLIENT)
        headers = [
            ("host", f"{target.host}:{target.port}"),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("connection", "close"),
        ]
        data = http.send(h11.Request(method="POST", target=path, headers=headers)) or b""
        data += http.send(h11.Data(data=body)) or b""
        data += http.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)
        status = 0
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(bytes(await stream.receive_some(65536)))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return status
