"""Confluent-compatible schema registry with field classification.

Modules (pure ones have no I/O):
  classification.py  pure  Classification, FieldInfo, field_infos(schema), downgrades(old, new)
  canonical.py       pure  parse(text, reference_texts) -> Parsed (avro schema, PCF, identity
                           fingerprint, fields); fastavro_schema(text, reference_texts)
  compatibility.py   pure  Level (the seven levels), can_read(reader, writer), check(level, new,
                           existing) — rules from avro.compatibility's checker
  errors.py                RegistryError tree; each error carries Confluent's status/error_code
  models.py, store.py      tables and queries (control-plane database, Alembic branch "schemas")
  registry.py              SchemaRegistry(sessions, audit): register, version, by_id (cached),
                           lookup, check, deletes, config, mode; appends schema.* audit records

Identity: Avro Parsing Canonical Form plus the attributes PCF strips but that matter here
(defaults, aliases, logical types, classification, tags) and the pinned references.
HTTP: ``gateway/routes/registry.py`` mounts the Confluent REST API at ``/registry``.
"""
