"""channels sync: outbox of window and product changes for the Channels shop

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 23:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'channels_outbox',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('key', sa.String(length=80), nullable=False),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('product_id', sa.BigInteger(), nullable=False),
        sa.Column('window_id', sa.BigInteger(), nullable=True),
        sa.Column('reason', sa.String(length=40), nullable=False),
        sa.Column('status', sa.String(length=10), server_default='pending', nullable=False),
        sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
        sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['product_id'], ['products.id']),
        sa.ForeignKeyConstraint(['window_id'], ['windows.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key'),
    )
    op.create_index('ix_channels_outbox_pending', 'channels_outbox', ['id'], unique=False,
                    postgresql_where=sa.text("status = 'pending'"))
    op.create_table(
        'channels_window_items',
        sa.Column('window_id', sa.BigInteger(), nullable=False),
        sa.Column('product_id', sa.BigInteger(), nullable=False),
        sa.Column('finder_id', sa.String(length=64), nullable=False),
        sa.Column('channels_product_id', sa.String(length=64), nullable=True),
        sa.Column('state', sa.String(length=10), nullable=False),
        sa.Column('synced_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('shop_status', sa.Integer(), nullable=True),
        sa.Column('shop_stock', sa.BigInteger(), nullable=True),
        sa.Column('shop_sales', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
        sa.Column('stats_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['product_id'], ['products.id']),
        sa.ForeignKeyConstraint(['window_id'], ['windows.id']),
        sa.PrimaryKeyConstraint('window_id', 'product_id'),
    )


def downgrade() -> None:
    op.drop_table('channels_window_items')
    op.drop_index('ix_channels_outbox_pending', table_name='channels_outbox', postgresql_where=sa.text("status = 'pending'"))
    op.drop_table('channels_outbox')
