"""Messages fanned out by a worker: status, sent time, error, audience and rendered text, claim

Revision ID: 0003_async_fanout
Revises: 0002
Create Date: 2026-12-03

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003_async_fanout'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('message_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=16), server_default='sent', nullable=False))
        batch_op.add_column(sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('error', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('audience', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('subject', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('body', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('claim', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('fanout_attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_index('ix_message_message_fanout', ['status', 'claimed_until'], unique=False)
    # messages sent before fan-out existed were sent when made
    op.execute("UPDATE message_message SET sent_at = created_at")


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('message_message', schema=None) as batch_op:
        batch_op.drop_index('ix_message_message_fanout')
        for column in (
            'fanout_attempts', 'claimed_until', 'claim', 'body', 'subject', 'audience', 'error', 'sent_at', 'status'
        ):
            batch_op.drop_column(column)
