"""Alembic environment of the message service."""

from sqlmodel import SQLModel

import tongban_kit.consumer
import tongban_kit.outbox  # noqa: F401  (kit tables: outbox)
import tongban_message.models  # noqa: F401
from tongban_kit.db import run_alembic_env

run_alembic_env(SQLModel.metadata, ("message_",))
