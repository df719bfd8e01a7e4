"""The worker protocol on the wire, both sides: what the engine and the SDK share.

- :mod:`.protocol`: the message codec (sans-IO, no trio).
- :mod:`.frames`: WebSocket frames after the upgrade (sans-IO).
- :mod:`.handshake`: the HTTP upgrade, server (wsproto) and client (h11).
- :mod:`.websocket`: an open WebSocket, one base for parsing, the message queue, the closed
  state and pongs, with the server and the client side on top.
- :mod:`.socket_io`: the one place that reads from and writes to a socket's descriptor.

The only part of the runtime the SDK imports; it imports nothing else of the project
(tests/sdk/test_depends_only_on_wire.py checks both).
"""
