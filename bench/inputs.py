"""Input structuring against the hand-written checks it replaced (runtime/calls/inputs.py).

    .venv/bin/python bench/inputs.py

Times, per call, the input check of two hot engine functions: ``state::get``
(``{scope, key}``, both required strings) and ``engine::functions::list``
(``{include_internal?}``, any input), each the way the engine does it now
(:func:`iii_trio.runtime.calls.inputs.structure` into the declared class) and the way it
did before (the hand-written helpers, copied here as they were). Best of several repeats,
so a busy machine shows in the spread rather than in the figure.
"""

from __future__ import annotations

import timeit
from typing import Any

from iii_trio.runtime.builtins.inputs import Listing
from iii_trio.runtime.calls import inputs
from iii_trio.runtime.calls.errors import deserialization_error
from iii_trio.runtime.modules.state.inputs import StateKey

REPEATS = 7
CALLS = 100_000


def hand_field(function_id: str, data: Any, name: str) -> str:
    """``state::get``'s check before (runtime/modules/state/module.py ``_field``)."""
    if not isinstance(data, dict):
        raise deserialization_error(function_id, "expected an object")
    value = data.get(name)
    if value is None:
        raise deserialization_error(function_id, f"missing field `{name}`")
    if not isinstance(value, str):
        raise deserialization_error(function_id, f"`{name}` must be a string")
    return value


def hand_flag(function_id: str, data: dict[str, Any], key: str) -> bool:
    """``engine::functions::list``'s check before (runtime/builtins/module.py ``_flag``)."""
    value = data.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise deserialization_error(function_id, f"'{key}' must be a boolean")
    return value


def state_get_by_hand(data: Any) -> Any:
    return hand_field("state::get", data, "scope"), hand_field("state::get", data, "key")


def functions_list_by_hand(data: Any) -> Any:
    body = data if isinstance(data, dict) else {}
    return hand_flag("engine::functions::list", body, "include_internal")


def best_us(call: Any, data: Any) -> float:
    runs = timeit.repeat(lambda: call(data), number=CALLS, repeat=REPEATS)
    return min(runs) / CALLS * 1e6


def main() -> None:
    state_input = {"scope": "orders", "key": "o1", "_caller_worker_id": "w-1"}
    listing_input = {"include_internal": True, "_caller_worker_id": "w-1"}
    rows = [
        (
            "state::get",
            best_us(state_get_by_hand, state_input),
            best_us(lambda d: inputs.structure("state::get", d, StateKey), state_input),
        ),
        (
            "engine::functions::list",
            best_us(functions_list_by_hand, listing_input),
            best_us(
                lambda d: inputs.structure("engine::functions::list", d, Listing), listing_input
            ),
        ),
    ]
    print(f"{'function':<26}{'by hand':>10}{'structured':>12}{'extra':>9}")
    for name, by_hand, structured in rows:
        print(f"{name:<26}{by_hand:>8.2f}µs{structured:>10.2f}µs{structured - by_hand:>7.2f}µs")


if __name__ == "__main__":
    main()
