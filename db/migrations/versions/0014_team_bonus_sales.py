"""team bonus taken back when the sales it was paid on are refunded

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 16:05:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('team_bonus_sales',
    sa.Column('month', sa.String(7), primary_key=True),
    sa.Column('promoter_id', sa.BigInteger(), sa.ForeignKey('promoters.id'), primary_key=True),
    sa.Column('order_no', sa.String(32), sa.ForeignKey('orders.order_no'), primary_key=True),
    sa.Column('team_bonus_bps', sa.Integer(), nullable=False),
    sa.Column('gmv_fen', sa.BigInteger(), nullable=False),
    sa.Column('refunded_fen', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.CheckConstraint('refunded_fen >= 0 AND refunded_fen <= gmv_fen', name='ck_team_bonus_sales_refunded'))
    op.create_index('ix_team_bonus_sales_order_no', 'team_bonus_sales', ['order_no'])


def downgrade() -> None:
    op.drop_table('team_bonus_sales')
