"""what an app's own token may send: units, templates, people by account id

Revision ID: 0004_message_allowances
Revises: 0003
Create Date: 2026-12-03

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_message_allowances"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Three columns on auth_client; existing apps may send nothing on their own until an administrator says so."""
    with op.batch_alter_table("auth_client") as batch:
        batch.add_column(sa.Column("message_units", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("message_templates", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("message_to_accounts", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("auth_client") as batch:
        batch.drop_column("message_to_accounts")
        batch.drop_column("message_templates")
        batch.drop_column("message_units")
