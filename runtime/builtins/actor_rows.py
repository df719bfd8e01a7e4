"""The wire rows of ``engine::actors::list`` and ``engine::actors::tree`` (D12).

The actor toolkit reports typed snapshots; this is where they take the JSON shape the
introspection functions have always answered with (key order included, so the bytes on
the wire stay the same): the mailbox without its waiting senders, the state as its value,
``children`` last in a tree node.
"""

from __future__ import annotations

from typing import Any

from iii_trio.actors import ActorSnapshot, ActorTreeNode


def actor_row(actor: ActorSnapshot) -> dict[str, Any]:
    mailbox = actor.mailbox
    return {
        "id": actor.id,
        "kind": actor.kind,
        "name": actor.name,
        "parent": actor.parent,
        "state": actor.state.value,
        "started_at": actor.started_at_ms,
        "restarts": actor.restarts,
        "mailbox": {"depth": mailbox.depth, "peak": mailbox.peak, "capacity": mailbox.capacity},
    }


def tree_row(node: ActorTreeNode) -> dict[str, Any]:
    """One node and its subtree, nested (the tree is a few levels deep)."""
    row = actor_row(node.actor)
    row["children"] = [tree_row(child) for child in node.children]
    return row
