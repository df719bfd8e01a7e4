"""``wait_until``: the one way the tests wait for a change that has no event to wait on.

Prefer an event when there is one (a ``trio.Event`` a handler sets, a frame to ``expect``);
poll only state that changes without telling anyone, such as an engine function's listing.

Under trio's autojump clock the polling costs no real time: each sleep is skipped as soon as
every task is blocked, and ``timeout`` is in virtual seconds. Under the real clock (a test
that drives another OS process) the same call waits for real, bounded by ``timeout``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import trio

T = TypeVar("T")

POLL_SECONDS = 0.01
"""Between two checks: short, so a test never waits long after the change it waits for."""


@overload
async def wait_until(
    predicate: Callable[[], Awaitable[T]],
    *,
    what: str,
    timeout: float = ...,
    interval: float = ...,
) -> T: ...


@overload
async def wait_until(
    predicate: Callable[[], T],
    *,
    what: str,
    timeout: float = ...,
    interval: float = ...,
) -> T: ...


async def wait_until(
    predicate: Callable[[], Any],
    *,
    what: str,
    timeout: float = 10,
    interval: float = POLL_SECONDS,
) -> Any:
    """Call ``predicate`` (sync or async) until it returns something truthy; return that.

    ``what`` names the awaited change ("the route is bound"). If ``timeout`` seconds pass
    first, the test fails with an ``AssertionError`` saying what did not happen and what the
    last check returned.
    """
    last: Any = None
    try:
        with trio.fail_after(timeout):
            while True:
                last = predicate()
                if inspect.isawaitable(last):
                    last = await last
                if last:
                    return last
                await trio.sleep(interval)
    except trio.TooSlowError:
        seen = repr(last)
        if len(seen) > 300:
            seen = seen[:300] + "..."
        raise AssertionError(f"not within {timeout} s: {what} (last check: {seen})") from None
