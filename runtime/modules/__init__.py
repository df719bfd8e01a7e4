"""Engine modules (HTTP API, state, streams, queues, pub/sub, cron, observability).

One folder per module, each of the same shape: ``config.py`` (its settings, with the
``Choice`` the config parser matches), ``module.py`` (the module actor, an
:class:`~iii_trio.runtime.modules.base.EngineModule`) and, where a module has several
stores, its adapters; the package's ``__init__`` declares its ``KIND``
(:class:`~iii_trio.runtime.modules.kind.ModuleKind`). :mod:`.catalog` lists every kind;
:mod:`.context` is all a module sees of the engine; :mod:`.storage` holds what the modules'
adapters share.
"""
