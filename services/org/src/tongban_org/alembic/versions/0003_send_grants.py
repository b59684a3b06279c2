"""sending rights: a principal may address messages to a subtree

Revision ID: 0003_send_grants
Revises: 0002
Create Date: 2026-12-03

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_send_grants"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The org_send_grant table."""
    op.create_table(
        "org_send_grant",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("principal", sa.String(length=100), nullable=False),
        sa.Column("unit_id", sa.String(length=36), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["org_unit.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("principal", "unit_id", name="uq_org_send_grant"),
    )
    op.create_index(op.f("ix_org_send_grant_principal"), "org_send_grant", ["principal"], unique=False)


def downgrade() -> None:
    """Drop it."""
    op.drop_index(op.f("ix_org_send_grant_principal"), table_name="org_send_grant")
    op.drop_table("org_send_grant")
