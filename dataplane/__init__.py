"""The data plane: the publish and delivery use cases, with no HTTP in sight.

ports.py        the small Protocols the use cases take (catalog, grants, consents, schemas,
                sealer); the audit sink is ``exchange.auditing.AuditSink``
publish.py      Publisher: authorise → validate (JSON) or decode (frames) → seal → encode →
                one Kafka transaction with the audit event made durable inside it
idempotency.py  Idempotency-Key claims and stored answers
delivery.py     Deliverer: grant and verdict caches; decode + open sealed fields in one pass
render.py       pure steps: policy decision, projection, record shape, audit events
loop.py         DeliveryLoop: check access → read → render, for pull, SSE and webhooks
fanout.py       live groups: one render per batch for every stream with the same view
webhooks.py     signed POSTs with retries, dead letters, a lease per subscription
egress.py       where a webhook may go (address rules) and the POST pinned to a checked address
hub.py, readers.py  shared topic readers (one per topic for live feeds, pooled for catch-up)
store.py, cursor.py, models.py  subscriptions, HMAC-signed cursors (control-plane tables)
"""
