"""settlements: supplier profit sharing per payment, supplier bills, commission statements, runs

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 10:00:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

STATUSES = ('PLANNED', 'SPLIT_REQUESTED', 'SPLITTING', 'SPLIT', 'UNFREEZE_REQUESTED', 'DONE', 'FAILED')


def _now(name='created_at'):
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False)


def upgrade() -> None:
    op.create_table('settlement_runs',
    sa.Column('kind', sa.String(12), primary_key=True),
    sa.Column('period', sa.String(10), primary_key=True),
    sa.Column('workflow_id', sa.String(80), nullable=False),
    sa.Column('status', sa.String(20), nullable=False),
    sa.Column('runs', sa.Integer(), nullable=False),
    sa.Column('totals', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    _now('started_at'),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('supplier','commission')", name='ck_settlement_runs_kind'),
    )
    op.create_table('supplier_settlements',
    sa.Column('order_no', sa.String(32), sa.ForeignKey('orders.order_no'), primary_key=True),
    sa.Column('settle_date', sa.Date(), nullable=False, index=True),
    sa.Column('transaction_id', sa.String(64), nullable=False),
    sa.Column('out_order_no', sa.String(64), nullable=False, unique=True),
    sa.Column('unfreeze_out_order_no', sa.String(64), nullable=False, unique=True),
    sa.Column('paid_fen', sa.BigInteger(), nullable=False),
    sa.Column('refunded_fen', sa.BigInteger(), nullable=False),
    sa.Column('max_ratio_bps', sa.Integer(), nullable=False),
    sa.Column('unsplit_fen', sa.BigInteger(), nullable=True),
    sa.Column('room_fen', sa.BigInteger(), nullable=False),
    sa.Column('planned_split_fen', sa.BigInteger(), nullable=False),
    sa.Column('split_fen', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(20), nullable=False, index=True),
    sa.Column('wechat_order_id', sa.String(64), nullable=True),
    sa.Column('unfreeze_order_id', sa.String(64), nullable=True),
    sa.Column('failure', sa.Text(), nullable=True),
    _now(),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint(f'status IN {STATUSES}', name='ck_supplier_settlements_status'),
    sa.CheckConstraint('split_fen >= 0 AND split_fen <= planned_split_fen AND planned_split_fen <= room_fen',
                       name='ck_supplier_settlements_cap'),
    )
    op.create_table('supplier_settlement_lines',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('order_no', sa.String(32), sa.ForeignKey('supplier_settlements.order_no'), nullable=False, index=True),
    sa.Column('supplier_id', sa.BigInteger(), sa.ForeignKey('suppliers.id'), nullable=False, index=True),
    sa.Column('settle_date', sa.Date(), nullable=False, index=True),
    sa.Column('sales_fen', sa.BigInteger(), nullable=False),
    sa.Column('refunds_fen', sa.BigInteger(), nullable=False),
    sa.Column('service_fee_fen', sa.BigInteger(), nullable=False),
    sa.Column('commission_fen', sa.BigInteger(), nullable=False),
    sa.Column('adjustment_fen', sa.BigInteger(), nullable=False),
    sa.Column('share_fen', sa.BigInteger(), nullable=False),
    sa.Column('planned_split_fen', sa.BigInteger(), nullable=False),
    sa.Column('split_fen', sa.BigInteger(), nullable=False),
    sa.Column('outstanding_fen', sa.BigInteger(), nullable=False),
    sa.Column('receiver_account', sa.String(64), nullable=True),
    sa.Column('result', sa.String(10), nullable=False),
    sa.Column('detail_id', sa.String(64), nullable=True),
    sa.Column('fail_reason', sa.String(64), nullable=True),
    sa.UniqueConstraint('order_no', 'supplier_id', name='uq_supplier_settlement_lines'),
    sa.CheckConstraint('split_fen >= 0 AND split_fen <= planned_split_fen AND planned_split_fen <= GREATEST(share_fen, 0)',
                       name='ck_supplier_settlement_lines_split'),
    sa.CheckConstraint('split_fen + outstanding_fen = share_fen', name='ck_supplier_settlement_lines_whole'),
    )
    op.create_table('supplier_bills',
    sa.Column('settle_date', sa.Date(), primary_key=True),
    sa.Column('supplier_id', sa.BigInteger(), sa.ForeignKey('suppliers.id'), primary_key=True, index=True),
    sa.Column('orders', sa.Integer(), nullable=False),
    sa.Column('sales_fen', sa.BigInteger(), nullable=False),
    sa.Column('refunds_fen', sa.BigInteger(), nullable=False),
    sa.Column('service_fee_fen', sa.BigInteger(), nullable=False),
    sa.Column('commission_fen', sa.BigInteger(), nullable=False),
    sa.Column('adjustment_fen', sa.BigInteger(), nullable=False),
    sa.Column('net_fen', sa.BigInteger(), nullable=False),
    sa.Column('split_fen', sa.BigInteger(), nullable=False),
    sa.Column('outstanding_fen', sa.BigInteger(), nullable=False),
    _now(),
    _now('updated_at'),
    sa.CheckConstraint('split_fen + outstanding_fen = net_fen', name='ck_supplier_bills_whole'),
    )
    op.create_table('commission_statements',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('month', sa.String(7), nullable=False),
    sa.Column('promoter_id', sa.BigInteger(), sa.ForeignKey('promoters.id'), nullable=False, index=True),
    sa.Column('opening_fen', sa.BigInteger(), nullable=False),
    sa.Column('released_fen', sa.BigInteger(), nullable=False),
    sa.Column('reversed_fen', sa.BigInteger(), nullable=False),
    sa.Column('withdrawn_fen', sa.BigInteger(), nullable=False),
    sa.Column('other_fen', sa.BigInteger(), nullable=False),
    sa.Column('closing_fen', sa.BigInteger(), nullable=False),
    sa.Column('carried_negative_fen', sa.BigInteger(), nullable=False),
    sa.Column('entries', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(20), nullable=False, index=True),
    sa.Column('reviewed_by_user_id', sa.BigInteger(), sa.ForeignKey('users.id'), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('review_note', sa.Text(), nullable=False),
    _now(),
    sa.UniqueConstraint('month', 'promoter_id', name='uq_commission_statements_month_promoter'),
    sa.CheckConstraint("status IN ('final','awaiting_review','rejected')", name='ck_commission_statements_status'),
    sa.CheckConstraint('closing_fen = opening_fen + released_fen - reversed_fen - withdrawn_fen + other_fen',
                       name='ck_commission_statements_arithmetic'),
    )
    # the supplier run pages through orders completed by the end of its day
    op.create_index('ix_orders_completed_at', 'orders', ['completed_at'])
    # the commission run batches promoters by the id of their `available` account
    op.create_index('ix_ledger_accounts_owner', 'ledger_accounts', ['owner_type', 'owner_id'])


def downgrade() -> None:
    op.drop_index('ix_ledger_accounts_owner', table_name='ledger_accounts')
    op.drop_index('ix_orders_completed_at', table_name='orders')
    op.drop_table('commission_statements')
    op.drop_table('supplier_bills')
    op.drop_table('supplier_settlement_lines')
    op.drop_table('supplier_settlements')
    op.drop_table('settlement_runs')
