"""Channels shop inbound: every shop event once, and the pull's cursors

Revision ID: 0023
Revises: 0020
Create Date: 2026-12-03 18:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0023'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('channels_events',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('key', sa.String(120), nullable=False),
    sa.Column('event', sa.String(64), nullable=False),
    sa.Column('shop_order_id', sa.String(32), nullable=False),
    sa.Column('after_sale_order_id', sa.String(32), nullable=True),
    sa.Column('source', sa.String(8), nullable=False),
    sa.Column('create_time', sa.BigInteger(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.UniqueConstraint('key', name='channels_events_key_key'),
    )
    op.create_index('ix_channels_events_shop_order_id', 'channels_events', ['shop_order_id'])
    op.create_table('channels_pull_cursors',
    sa.Column('name', sa.String(20), primary_key=True),
    sa.Column('until', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('channels_pull_cursors')
    op.drop_index('ix_channels_events_shop_order_id', table_name='channels_events')
    op.drop_table('channels_events')
