"""platform-funded coupons and per-buyer limits

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-04 03:35:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0029'
down_revision = '0028'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column('coupons', 'supplier_id', existing_type=sa.BigInteger(), nullable=True)
    op.add_column('coupons', sa.Column('per_buyer_limit', sa.Integer(), server_default=sa.text('1'), nullable=False))
    op.create_check_constraint('ck_coupons_per_buyer', 'coupons', 'per_buyer_limit BETWEEN 1 AND total_limit')
    op.drop_constraint('uq_coupon_claim_once_per_buyer', 'coupon_claims', type_='unique')
    op.drop_constraint('uq_coupon_once_per_buyer', 'coupon_redemptions', type_='unique')
    op.add_column('order_lines', sa.Column('subsidy_fen', sa.BigInteger(), server_default=sa.text('0'), nullable=False))
    op.create_check_constraint('ck_order_lines_subsidy', 'order_lines', 'subsidy_fen >= 0')


def downgrade() -> None:
    op.drop_constraint('ck_order_lines_subsidy', 'order_lines')
    op.drop_column('order_lines', 'subsidy_fen')
    op.create_unique_constraint('uq_coupon_once_per_buyer', 'coupon_redemptions', ['code', 'buyer_user_id'])
    op.create_unique_constraint('uq_coupon_claim_once_per_buyer', 'coupon_claims', ['code', 'buyer_user_id'])
    op.drop_constraint('ck_coupons_per_buyer', 'coupons')
    op.drop_column('coupons', 'per_buyer_limit')
    op.alter_column('coupons', 'supplier_id', existing_type=sa.BigInteger(), nullable=False)
