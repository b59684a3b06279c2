"""Tongban message service (消息体系): templates, messages, deliveries and the inbox."""
