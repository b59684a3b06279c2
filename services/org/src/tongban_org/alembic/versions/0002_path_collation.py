"""path in byte order: one btree index serves subtree ranges and depth-first order

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
    """Collate path as "C" and index it plainly (PostgreSQL; SQLite already compares bytes)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_org_unit_path", table_name="org_unit")
    op.alter_column("org_unit", "path", type_=sa.String(length=1024, collation="C"), existing_nullable=False)
    op.create_index("ix_org_unit_path", "org_unit", ["path"], unique=False)


def downgrade() -> None:
    """Back to the database collation with a pattern-ops index."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_org_unit_path", table_name="org_unit")
    op.alter_column("org_unit", "path", type_=sa.String(length=1024), existing_nullable=False)
    op.create_index("ix_org_unit_path", "org_unit", ["path"], unique=False, postgresql_ops={"path": "text_pattern_ops"})
