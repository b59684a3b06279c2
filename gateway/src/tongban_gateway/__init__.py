"""Tongban gateway: the one public entry in front of the services."""

__version__ = "0.1.0"
