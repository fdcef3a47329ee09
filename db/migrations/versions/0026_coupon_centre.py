"""coupon centre: claimable coupons and buyers' claims

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-04 01:35:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('coupons', sa.Column('claimable', sa.Boolean(), server_default=sa.text('false'), nullable=False))
    op.add_column('coupons', sa.Column('claimed_count', sa.Integer(), server_default=sa.text('0'), nullable=False))
    op.create_check_constraint('ck_coupons_claimed', 'coupons', 'claimed_count BETWEEN 0 AND total_limit')
    op.create_table('coupon_claims',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('code', sa.String(32), sa.ForeignKey('coupons.code'), nullable=False),
    sa.Column('buyer_user_id', sa.BigInteger(), sa.ForeignKey('users.id'), nullable=False),
    sa.Column('order_no', sa.String(32), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.UniqueConstraint('code', 'buyer_user_id', name='uq_coupon_claim_once_per_buyer'),
    )
    op.create_index('ix_coupon_claims_code', 'coupon_claims', ['code'])
    op.create_index('ix_coupon_claims_buyer_user_id', 'coupon_claims', ['buyer_user_id'])


def downgrade() -> None:
    op.drop_table('coupon_claims')
    op.drop_constraint('ck_coupons_claimed', 'coupons')
    op.drop_column('coupons', 'claimed_count')
    op.drop_column('coupons', 'claimable')
