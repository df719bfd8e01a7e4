"""iii-trio: an engine for the iii worker protocol, built as an actor runtime on trio.

The subpackages live in the repository's top-level folders and are mapped here by
setuptools: ``iii_trio.actors`` (actors/), ``iii_trio.runtime`` (runtime/) and
``iii_trio.sdk`` (sdk/).
"""

__version__ = "0.1.0"
