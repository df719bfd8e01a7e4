"""Typed errors inside the engine; on the wire they become ``{code, message}``."""

from __future__ import annotations

from iii_trio.runtime.wire import protocol


class InvocationError(Exception):
    """Raised by an engine function to answer its caller with an error body."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def body(self) -> protocol.ErrorBody:
        return protocol.ErrorBody(self.code, self.message)


def deserialization_error(function_id: str, detail: str) -> InvocationError:
    """A missing or ill-typed input field (modules.md §2.1)."""
    return InvocationError(
        "deserialization_error", f"Failed to deserialize input for {function_id}: {detail}"
    )


class TriggerConfigError(Exception):
    """An engine trigger type refused a binding's config (``trigger_registration_failed``)."""
