"""Tongban authentication service."""
