"""group buying (拼团): deals, groups and members' places

Revision ID: 0028
Revises: 0026
Create Date: 2026-12-04 03:20:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0028'
down_revision = '0026'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('group_deals',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('sku_id', sa.BigInteger(), sa.ForeignKey('skus.id'), nullable=False),
    sa.Column('supplier_id', sa.BigInteger(), sa.ForeignKey('suppliers.id'), nullable=False),
    sa.Column('group_price_fen', sa.BigInteger(), nullable=False),
    sa.Column('group_size', sa.Integer(), nullable=False),
    sa.Column('time_limit_seconds', sa.Integer(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('group_price_fen > 0 AND group_size BETWEEN 2 AND 50 AND time_limit_seconds > 0',
                       name='ck_group_deals_positive'),
    )
    op.create_index('ix_group_deals_sku_id', 'group_deals', ['sku_id'])
    op.create_index('ix_group_deals_supplier_id', 'group_deals', ['supplier_id'])
    op.create_table('group_buys',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('deal_id', sa.BigInteger(), sa.ForeignKey('group_deals.id'), nullable=False),
    sa.Column('opener_order_no', sa.String(32), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(10), server_default='opening', nullable=False),
    sa.Column('deadline', sa.DateTime(timezone=True), nullable=True),
    sa.Column('platform_fill', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('platform_filled', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint('opener_order_no', name='group_buys_opener_order_no_key'),
    )
    op.create_index('ix_group_buys_deal_id', 'group_buys', ['deal_id'])
    op.create_table('group_seats',
    sa.Column('order_no', sa.String(32), primary_key=True),
    sa.Column('group_id', sa.BigInteger(), sa.ForeignKey('group_buys.id'), nullable=False),
    sa.Column('buyer_user_id', sa.BigInteger(), sa.ForeignKey('users.id'), nullable=False),
    sa.Column('status', sa.String(10), server_default='held', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    )
    op.create_index('ix_group_seats_group_id', 'group_seats', ['group_id'])


def downgrade() -> None:
    op.drop_table('group_seats')
    op.drop_table('group_buys')
    op.drop_table('group_deals')
