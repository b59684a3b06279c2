"""HTTP API of the org service."""
