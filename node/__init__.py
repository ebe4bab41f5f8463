"""County node: a local store-and-forward outbox in front of a league site's gateway.

No Kafka, no JVM: a SQLite (WAL) outbox, a forwarder that sends it in order to the site's
gateway (gzip batches, deterministic Idempotency-Keys), and a prefetcher that pulls the
department's subscriptions ahead so local applications can read them while the link is down.
The HTTP face local applications call is :mod:`gateway.node_app` (only ``gateway/`` serves HTTP).
"""
