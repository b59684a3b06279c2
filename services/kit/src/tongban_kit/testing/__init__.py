"""Test support: real NATS and PostgreSQL fixtures, event recording and schema validation."""
