"""The ``listener`` node: the worker port, one actor per worker socket, channels."""
