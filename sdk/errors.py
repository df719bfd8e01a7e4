"""Errors a worker sees when it calls other functions."""

from __future__ import annotations


class InvocationError(Exception):
    """A call failed: ``code`` and ``message`` as on the wire, ``stacktrace`` when the
    target sent one. Timeouts have code ``timeout``; a call cut off by a lost connection
    has code ``connection_lost``."""

    def __init__(self, code: str, message: str, stacktrace: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.stacktrace = stacktrace


class InvocationTimeout(InvocationError):
    def __init__(self, function_id: str, seconds: float) -> None:
        super().__init__("timeout", f"invocation of {function_id} timed out after {seconds:g} s")


class ConnectionLost(InvocationError):
    def __init__(self, function_id: str) -> None:
        super().__init__(
            "connection_lost", f"the connection to the engine ended during a call of {function_id}"
        )
