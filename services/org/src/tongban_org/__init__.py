"""Tongban organisation service (组织体系)."""
