"""profit-sharing returns (分账回退) after refunds of split orders; promoters' automatic payout choice

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 23:10:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('profit_sharing_returns',
    sa.Column('out_return_no', sa.String(64), primary_key=True),
    sa.Column('refund_no', sa.String(32), sa.ForeignKey('refunds.refund_no'), nullable=False),
    sa.Column('order_no', sa.String(32), sa.ForeignKey('supplier_settlements.order_no'), nullable=False),
    sa.Column('supplier_id', sa.BigInteger(), sa.ForeignKey('suppliers.id'), nullable=False),
    sa.Column('return_mchid', sa.String(64), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('result', sa.String(12), nullable=False),
    sa.Column('return_id', sa.String(64), nullable=True),
    sa.Column('fail_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('amount_fen > 0', name='ck_profit_sharing_returns_amount'))
    op.create_index('ix_profit_sharing_returns_refund_no', 'profit_sharing_returns', ['refund_no'])
    op.create_index('ix_profit_sharing_returns_order_no', 'profit_sharing_returns', ['order_no'])
    op.add_column('promoters', sa.Column('auto_payout', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    op.drop_column('promoters', 'auto_payout')
    op.drop_table('profit_sharing_returns')
