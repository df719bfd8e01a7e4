"""The ``modules/worker`` node: the engine's built-in functions and trigger types."""
