"""The in-memory key-value store (``store_method: in_memory``): gone when the engine stops."""

from __future__ import annotations

from typing import Any

from iii_trio.runtime.modules.storage.kv import Update


class MemoryStore:
    """Scopes of keys in dicts (insertion ordered). No operation awaits, so each is atomic."""

    def __init__(self) -> None:
        self._scopes: dict[str, dict[str, Any]] = {}

    async def get(self, scope: str, key: str) -> tuple[bool, Any]:
        values = self._scopes.get(scope, {})
        return (key in values), values.get(key)

    async def set(self, scope: str, key: str, value: Any) -> Any:
        values = self._scopes.setdefault(scope, {})
        old = values.get(key)
        values[key] = value
        return old

    async def delete(self, scope: str, key: str) -> tuple[bool, Any]:
        values = self._scopes.get(scope)
        if values is None or key not in values:
            return False, None
        old = values.pop(key)
        if not values:
            del self._scopes[scope]  # emptied scopes leave list_groups at once
        return True, old

    async def update(self, scope: str, key: str, change: Update) -> tuple[Any, Any]:
        values = self._scopes.setdefault(scope, {})
        old = values.get(key)
        new = values[key] = change(old)
        return old, new

    async def values(self, scope: str) -> list[Any]:
        return list(self._scopes.get(scope, {}).values())

    async def scopes(self) -> list[str]:
        return sorted(self._scopes)

    async def scope_sizes(self) -> dict[str, int]:
        return {scope: len(values) for scope, values in self._scopes.items()}

    def counts(self) -> dict[str, int]:
        return {"scopes": len(self._scopes), "keys": sum(map(len, self._scopes.values()))}

    async def aclose(self) -> None:
        pass
