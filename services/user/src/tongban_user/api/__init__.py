"""HTTP API of the user service."""
