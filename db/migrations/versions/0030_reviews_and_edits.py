"""product reviews (moderated) and content edits of listed products

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-04 03:40:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0030'
down_revision = '0029'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('product_reviews',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('order_line_id', sa.BigInteger(), sa.ForeignKey('order_lines.id'), nullable=False),
    sa.Column('order_no', sa.String(32), nullable=False),
    sa.Column('product_id', sa.BigInteger(), sa.ForeignKey('products.id'), nullable=False),
    sa.Column('supplier_id', sa.BigInteger(), sa.ForeignKey('suppliers.id'), nullable=False),
    sa.Column('buyer_user_id', sa.BigInteger(), sa.ForeignKey('users.id'), nullable=False),
    sa.Column('rating', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('images', postgresql.JSONB(), nullable=False),
    sa.Column('status', sa.String(20), nullable=False),
    sa.Column('moderation_note', sa.Text(), nullable=True),
    sa.Column('moderated_by_user_id', sa.BigInteger(), nullable=True),
    sa.Column('reply', sa.Text(), nullable=True),
    sa.Column('replied_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('rating BETWEEN 1 AND 5', name='ck_product_reviews_rating'),
    sa.UniqueConstraint('order_line_id', name='product_reviews_order_line_id_key'),
    )
    for column in ('order_no', 'product_id', 'supplier_id', 'buyer_user_id'):
        op.create_index(f'ix_product_reviews_{column}', 'product_reviews', [column])
    op.create_table('product_edits',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('product_id', sa.BigInteger(), sa.ForeignKey('products.id'), nullable=False),
    sa.Column('title', sa.String(200), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('images', postgresql.JSONB(), nullable=True),
    sa.Column('status', sa.String(12), server_default='pending', nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('reviewed_by_user_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index('ix_product_edits_product_id', 'product_edits', ['product_id'])


def downgrade() -> None:
    op.drop_table('product_edits')
    op.drop_table('product_reviews')
