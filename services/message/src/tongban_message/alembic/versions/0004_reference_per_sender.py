"""a message reference is unique per sender (app and person), not per app

Revision ID: 0004_reference_per_sender
Revises: 0003_async_fanout
Create Date: 2026-12-03

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_reference_per_sender"
down_revision: str | Sequence[str] | None = "0003_async_fanout"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Replace the per-app unique reference with one per app and person."""
    with op.batch_alter_table("message_message") as batch:
        batch.drop_constraint("uq_message_message_reference", type_="unique")
    op.create_index(
        "uq_message_message_sender_reference",
        "message_message",
        ["sender_client_id", "sender_sub", "reference"],
        unique=True,
        postgresql_nulls_not_distinct=True,
        postgresql_where=sa.text("reference IS NOT NULL"),
        sqlite_where=sa.text("reference IS NOT NULL"),
    )


def downgrade() -> None:
    """Back to one reference per app (fails if two people of one app used the same reference)."""
    op.drop_index("uq_message_message_sender_reference", table_name="message_message")
    with op.batch_alter_table("message_message") as batch:
        batch.create_unique_constraint("uq_message_message_reference", ["sender_client_id", "reference"])
