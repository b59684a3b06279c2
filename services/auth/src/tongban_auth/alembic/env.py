"""Alembic environment of the authentication service."""

from sqlmodel import SQLModel

import tongban_kit.consumer
import tongban_kit.outbox  # noqa: F401  (kit tables: outbox)
from tongban_kit.db import run_alembic_env

run_alembic_env(SQLModel.metadata, ("auth_",))
