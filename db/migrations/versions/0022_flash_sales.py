"""flash sales: the sale, each buyer's count, each order's claim

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-03 09:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('flash_sales',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('sku_id', sa.BigInteger(), sa.ForeignKey('skus.id'), nullable=False),
    sa.Column('supplier_id', sa.BigInteger(), sa.ForeignKey('suppliers.id'), nullable=False),
    sa.Column('price_fen', sa.BigInteger(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('sold', sa.Integer(), server_default='0', nullable=False),
    sa.Column('per_buyer_limit', sa.Integer(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(10), server_default='active', nullable=False),
    sa.Column('returned', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('sold >= 0 AND sold <= quantity', name='ck_flash_sales_sold'),
    sa.CheckConstraint('price_fen > 0 AND per_buyer_limit > 0 AND quantity > 0', name='ck_flash_sales_positive'))
    op.create_index('ix_flash_sales_sku_id', 'flash_sales', ['sku_id'])
    op.create_index('ix_flash_sales_supplier_id', 'flash_sales', ['supplier_id'])
    op.create_table('flash_sale_buyers',
    sa.Column('flash_sale_id', sa.BigInteger(), sa.ForeignKey('flash_sales.id'), primary_key=True),
    sa.Column('buyer_user_id', sa.BigInteger(), sa.ForeignKey('users.id'), primary_key=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.CheckConstraint('quantity >= 0', name='ck_flash_sale_buyers_quantity'))
    op.create_table('flash_sale_claims',
    sa.Column('order_no', sa.String(32), primary_key=True),
    sa.Column('flash_sale_id', sa.BigInteger(), sa.ForeignKey('flash_sales.id'), nullable=False),
    sa.Column('buyer_user_id', sa.BigInteger(), sa.ForeignKey('users.id'), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(10), server_default='held', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False))
    op.create_index('ix_flash_sale_claims_flash_sale_id', 'flash_sale_claims', ['flash_sale_id'])


def downgrade() -> None:
    op.drop_table('flash_sale_claims')
    op.drop_table('flash_sale_buyers')
    op.drop_table('flash_sales')
