"""Routers of the authentication service."""
