"""Confluent-compatible schema registry with field classification."""
