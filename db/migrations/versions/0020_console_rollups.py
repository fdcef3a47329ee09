"""operations console: staff audit trail, dashboard rollups, index on orders.paid_at

Revision ID: 0020
Revises: 0016
Create Date: 2026-12-03 09:00:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0020'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('staff_audit',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor_user_id', sa.BigInteger(), nullable=False),
    sa.Column('actor_role', sa.String(20), nullable=False),
    sa.Column('action', sa.String(40), nullable=False),
    sa.Column('subject_type', sa.String(20), nullable=False),
    sa.Column('subject_id', sa.String(64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('outcome', sa.String(10), nullable=False),
    sa.Column('detail', postgresql.JSONB(), nullable=False))
    op.create_index('ix_staff_audit_actor_user_id', 'staff_audit', ['actor_user_id'])
    op.create_index('ix_staff_audit_action', 'staff_audit', ['action'])

    op.create_table('rollup_facts',
    sa.Column('grain', sa.String(5), primary_key=True),
    sa.Column('period_start', sa.Date(), primary_key=True),
    sa.Column('dim', sa.String(10), primary_key=True),
    sa.Column('key', sa.String(64), primary_key=True),
    sa.Column('label', sa.String(200), nullable=False),
    sa.Column('supplier_id', sa.BigInteger(), nullable=True),
    sa.Column('gmv_fen', sa.BigInteger(), nullable=False),
    sa.Column('paid_orders', sa.Integer(), nullable=False),
    sa.Column('paying_buyers', sa.Integer(), nullable=False),
    sa.Column('repeat_buyers', sa.Integer(), nullable=False),
    sa.Column('units', sa.BigInteger(), nullable=False),
    sa.Column('refund_fen', sa.BigInteger(), nullable=False),
    sa.Column('refunded_orders', sa.Integer(), nullable=False),
    sa.Column('commission_fen', sa.BigInteger(), nullable=False),
    sa.Column('exposures', sa.BigInteger(), nullable=False),
    sa.Column('clicks', sa.BigInteger(), nullable=False),
    sa.Column('new_promoters', sa.Integer(), nullable=False),
    sa.Column('active_promoters', sa.Integer(), nullable=False),
    sa.Column('refreshed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False))
    op.create_index('ix_rollup_facts_series', 'rollup_facts', ['dim', 'key', 'grain', 'period_start'])
    op.create_index('ix_rollup_facts_supplier', 'rollup_facts', ['supplier_id', 'grain', 'period_start'])
    op.create_index('ix_rollup_facts_rank', 'rollup_facts', ['grain', 'period_start', 'dim', 'gmv_fen'])

    op.create_table('rollup_view_snapshots',
    sa.Column('day', sa.Date(), primary_key=True),
    sa.Column('product_id', sa.BigInteger(), primary_key=True),
    sa.Column('exposures', sa.BigInteger(), nullable=False),
    sa.Column('clicks', sa.BigInteger(), nullable=False))

    op.create_index('ix_orders_paid_at', 'orders', ['paid_at'])
    op.create_index('ix_ledger_transactions_kind_created', 'ledger_transactions', ['kind', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_ledger_transactions_kind_created', table_name='ledger_transactions')
    op.drop_index('ix_orders_paid_at', table_name='orders')
    op.drop_table('rollup_view_snapshots')
    op.drop_table('rollup_facts')
    op.drop_table('staff_audit')
