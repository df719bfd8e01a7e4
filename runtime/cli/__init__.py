"""``iii-trio``: ``serve`` and the introspection commands."""
