"""Legacy import: files and databases published through the gateway's public API.

``sources`` reads rows (CSV/TSV with encoding detection, JSON Lines, ``.xlsx``, SQL),
``infer`` proposes an Avro schema with ``detect``'s sensitive-data findings, ``mapping`` holds
the confirmed proposal (saved for repeat runs), ``convert`` turns rows into Avro values,
``run`` publishes them in batches with deterministic idempotency keys and a ``checkpoint``.
Nothing here talks to Kafka or the database: the department's own client does it all.
"""
