"""The worker protocol on the wire: message codec, WebSocket frames, handshake, socket I/O.

The only part of the runtime the SDK imports; it knows nothing of the engine.
"""
