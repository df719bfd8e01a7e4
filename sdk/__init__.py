"""The trio SDK for writing iii workers in Python.

from iii_trio.sdk import III

iii = III("ws://localhost:49134", worker_name="embedding")

@iii.function(id="embedding::similarity")
async def similarity(input): ...
"""

from iii_trio.sdk.client import III, InvocationContext, TriggerHandle
from iii_trio.sdk.errors import ConnectionLost, InvocationError, InvocationTimeout

__all__ = [
    "III",
    "ConnectionLost",
    "InvocationContext",
    "InvocationError",
    "InvocationTimeout",
    "TriggerHandle",
]
