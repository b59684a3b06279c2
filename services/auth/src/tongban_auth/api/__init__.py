"""HTTP API of the authentication service."""
