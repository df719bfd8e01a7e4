"""The ``registry`` and ``invocations`` nodes: functions, triggers, routing, live calls."""
