"""Shared plumbing for Tongban services."""

__version__ = "0.1.0"
