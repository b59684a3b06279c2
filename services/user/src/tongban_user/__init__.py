"""Tongban user service (用户体系)."""
