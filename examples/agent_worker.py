"""An agent-core-style worker on the trio SDK.

    III_URL=ws://localhost:49134 python examples/agent_worker.py

``agent::chat`` keeps each conversation in the engine's state (``state::get`` /
``state::set``, scope ``conversations``), publishes every exchange on the ``agent.replies``
topic, and also consumes the ``agent.inbox`` queue through a ``queue`` trigger. The reply
comes from a deliberately tiny rule-based "model" so the example runs anywhere.
"""

from __future__ import annotations

import os
from typing import Any

from iii_trio.sdk import III

SCOPE = "conversations"


def reply_to(message: str, turns: int) -> str:
    if message.strip().endswith("?"):
        return f"Good question. (turn {turns})"
    return f"Noted: {message} (turn {turns})"


def make_worker(url: str) -> III:
    iii = III(url, worker_name="agent-core")

    @iii.function(id="agent::chat", description="Answer a message and remember the thread")
    async def chat(input: dict[str, Any]) -> dict[str, Any]:
        conversation_id, message = input["conversation_id"], input["message"]
        history = await iii.trigger("state::get", {"scope": SCOPE, "key": conversation_id})
        turns: list[dict[str, str]] = list(history or [])
        answer = reply_to(message, len(turns) // 2 + 1)
        turns += [{"role": "user", "text": message}, {"role": "agent", "text": answer}]
        await iii.trigger("state::set", {"scope": SCOPE, "key": conversation_id, "value": turns})
        await iii.trigger_void(
            "publish",
            {
                "topic": "agent.replies",
                "data": {"conversation_id": conversation_id, "reply": answer},
            },
        )
        return {"reply": answer, "turns": len(turns) // 2}

    iii.register_trigger("queue", "agent::chat", {"topic": "agent.inbox"})
    return iii


if __name__ == "__main__":
    make_worker(os.environ.get("III_URL", "ws://localhost:49134")).run()
