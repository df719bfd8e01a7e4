"""The HTTP route table: a segment trie (spec/modules.md §3.2, D6).

A route is a list of segments; ``:name`` segments match any one segment (names do not tell
routes apart, static segments win over them). A leading slash is optional, a trailing slash
is significant (``users/`` is the segments ``["users", ""]``). Each (method, route) keeps
its bindings in registration order: the newest serves, and the route disappears only with
its last binding. Lookup walks one node per path segment, whatever the number of routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from iii_trio.runtime.calls.registry import Binding

ROUTED_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


def segments(path: str) -> list[str]:
    """``"/users/:id"`` and ``"users/:id"`` -> ``["users", ":id"]``; ``"/"`` -> ``[]``."""
    path = path.removeprefix("/")
    return path.split("/") if path else []


@attrs.define(eq=False)
class Node:
    static: dict[str, Node] = attrs.field(factory=dict)
    param: Node | None = None
    methods: dict[str, list[Binding]] = attrs.field(factory=dict)


@attrs.frozen
class Match:
    binding: Binding
    params: dict[str, str]  # raw (still percent-encoded) values by the serving route's names


class RouteTable:
    def __init__(self) -> None:
        self.root = Node()
        self.count = 0

    def add(self, method: str, pattern: str, binding: Binding) -> None:
        node = self.root
        for segment in segments(pattern):
            if segment.startswith(":"):
                if node.param is None:
                    node.param = Node()
                node = node.param
            else:
                node = node.static.setdefault(segment, Node())
        node.methods.setdefault(method, []).append(binding)
        self.count += 1

    def remove(self, method: str, pattern: str, binding: Binding) -> None:
        node: Node | None = self.root
        for segment in segments(pattern):
            assert node is not None
            node = node.param if segment.startswith(":") else node.static.get(segment)
            if node is None:
                return
        assert node is not None
        bindings = node.methods.get(method, [])
        if binding in bindings:
            bindings.remove(binding)
            self.count -= 1
            if not bindings:
                del node.methods[method]

    def lookup(self, method: str, path: str) -> tuple[Match | None, list[str]]:
        """The serving binding and its raw params; else (None, methods the path has), where
        an empty list means no route at all (404) and a non-empty one 405."""
        found = self._walk(self.root, segments(path), [])
        if found is None:
            return None, []
        node, values = found
        bindings = node.methods.get(method)
        if not bindings:
            return None, sorted(node.methods)
        binding = bindings[-1]  # the newest binding serves (§3.2)
        names = [s[1:] for s in segments(binding.config["api_path"]) if s.startswith(":")]
        return Match(binding, dict(zip(names, values, strict=False))), []

    def _walk(
        self, node: Node, rest: list[str], values: list[str]
    ) -> tuple[Node, list[str]] | None:
        if not rest:
            return (node, values) if node.methods else None
        head, tail = rest[0], rest[1:]
        child = node.static.get(head)
        if child is not None:  # static segments take precedence
            found = self._walk(child, tail, values)
            if found is not None:
                return found
        if node.param is not None:
            return self._walk(node.param, tail, [*values, head])
        return None
