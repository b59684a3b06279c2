"""name in byte order: one (name, id) index serves prefix search and its order

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Collate name as "C" and index (name, id) plainly (PostgreSQL; SQLite already compares bytes)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_user_name", table_name="user_account")
    op.alter_column("user_account", "name", type_=sa.String(length=100, collation="C"), existing_nullable=False)
    op.create_index("ix_user_name", "user_account", ["name", "id"], unique=False)


def downgrade() -> None:
    """Back to the database collation with a pattern-ops index."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_user_name", table_name="user_account")
    op.alter_column("user_account", "name", type_=sa.String(length=100), existing_nullable=False)
    op.create_index(
        "ix_user_name", "user_account", ["name", "id"], unique=False, postgresql_ops={"name": "text_pattern_ops"}
    )
