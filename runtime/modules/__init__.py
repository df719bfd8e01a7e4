"""Engine modules (HTTP API, state, streams, queues, pub/sub, cron, observability)."""
