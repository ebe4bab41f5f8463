"""Everything that touches Kafka lives in this package (the only importer of kafka-python)."""
