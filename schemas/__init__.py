"""Confluent-compatible schema registry with field classification.

Modules (pure ones have no I/O):
  classification.py  pure  Classification, FieldInfo, field_infos(schema), downgrades(old, new)
  forms.py           pure  confluent_form / normalized_form: the texts Confluent stores
  canonical.py       pure  parse(text, reference_texts, normalize=) -> Parsed (avro schema,
                           stored text, identity fingerprint, fields); fastavro_schema(...)
  compatibility.py   pure  Level (the seven levels), incompatibilities(reader, writer),
                           check(level, new, priors) -> Confluent's messages
  errors.py                RegistryError tree; each error carries Confluent's status/error_code
  models.py, store.py      tables and queries (control-plane database, Alembic branch "schemas")
  registry/                SchemaRegistry(sessions, audit), a package by concern: subjects and
                           versions, deletes, config and mode, rules (compatibility +
                           classification), ownership (which department owns a subject)

Identity: the stored text (Java Avro's compact form, or the normalised form on request) and
the pinned references, as in Confluent.
HTTP: ``gateway/routes/registry.py`` mounts the Confluent REST API at ``/registry``.
"""
