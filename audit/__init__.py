"""Tamper-evident audit log (issue 7).

- :mod:`audit.events`      the event format (version 1) and its RFC 8785 canonical bytes
- :mod:`audit.merkle`      RFC 9162 hashing, inclusion and consistency proofs (pure)
- :mod:`audit.checkpoint`  C2SP tlog-checkpoint bodies in signed notes, Ed25519 (pure)
- :mod:`audit.verify`      verification of a stored log against signed checkpoints (pure)
- :mod:`audit.store`       :class:`AuditLog`, the real ``AuditSink`` (Kafka + index, group commit)
- :mod:`audit.service`     checkpoints, proofs, queries, pruning, the checkpoint ticker
- :mod:`audit.sources`     reading the log back from the index or from the Kafka topic
- :mod:`audit.factory`     wiring from settings; :mod:`audit.keys` the audit's own key files
"""
