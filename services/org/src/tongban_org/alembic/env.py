"""Alembic environment of the org service."""

from sqlmodel import SQLModel

import tongban_kit.consumer
import tongban_kit.outbox  # noqa: F401  (kit tables: outbox)
import tongban_org.models  # noqa: F401
from tongban_kit.db import run_alembic_env

run_alembic_env(SQLModel.metadata, ("org_",))
