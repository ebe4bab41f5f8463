"""Data-plane state of the exchange: subscriptions and their cursors, shared topic readers,
in-memory fan-out to many streaming subscriptions, webhook signatures, publish idempotency."""
