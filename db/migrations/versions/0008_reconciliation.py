"""reconciliation: WeChat Pay daily bill runs and their differences

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 23:00:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reconciliation_bills',
    sa.Column('bill_date', sa.Date(), primary_key=True),
    sa.Column('exists', sa.Boolean(), nullable=False),
    sa.Column('hash_value', sa.String(64), nullable=True),
    sa.Column('summary', postgresql.JSONB(), nullable=False),
    sa.Column('fetched_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False))

    op.create_table('reconciliation_bill_rows',
    sa.Column('bill_date', sa.Date(), primary_key=True),
    sa.Column('kind', sa.String(8), primary_key=True),
    sa.Column('key', sa.String(64), primary_key=True),
    sa.Column('out_trade_no', sa.String(64), nullable=False),
    sa.Column('transaction_id', sa.String(64), nullable=False),
    sa.Column('refund_id', sa.String(64), nullable=True),
    sa.Column('trade_state', sa.String(16), nullable=False),
    sa.Column('refund_status', sa.String(16), nullable=True),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('fee_millifen', sa.BigInteger(), nullable=False),
    sa.Column('traded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('payment','refund')", name='ck_reconciliation_bill_rows_kind'))
    op.create_index('ix_reconciliation_bill_rows_key', 'reconciliation_bill_rows', ['kind', 'key'])

    op.create_table('reconciliation_runs',
    sa.Column('bill_date', sa.Date(), primary_key=True),
    sa.Column('attempt', sa.Integer(), primary_key=True),
    sa.Column('workflow_id', sa.String(80), nullable=False, unique=True),
    sa.Column('status', sa.String(20), nullable=False),
    sa.Column('bill_exists', sa.Boolean(), nullable=True),
    sa.Column('bill_hash', sa.String(64), nullable=True),
    sa.Column('matched', sa.Integer(), nullable=False),
    sa.Column('differences', sa.Integer(), nullable=False),
    sa.Column('totals', postgresql.JSONB(), nullable=False),
    sa.Column('timing', postgresql.JSONB(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('running','clean','differences','bill_unavailable')",
                       name='ck_reconciliation_runs_status'),
    sa.CheckConstraint('attempt >= 1', name='ck_reconciliation_runs_attempt'))

    op.create_table('reconciliation_differences',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('bill_date', sa.Date(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(24), nullable=False),
    sa.Column('subject', sa.String(8), nullable=False),
    sa.Column('out_trade_no', sa.String(64), nullable=True),
    sa.Column('out_refund_no', sa.String(64), nullable=True),
    sa.Column('ours_fen', sa.BigInteger(), nullable=True),
    sa.Column('bill_fen', sa.BigInteger(), nullable=True),
    sa.Column('our_state', sa.String(20), nullable=True),
    sa.Column('bill_state', sa.String(20), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['bill_date', 'attempt'], ['reconciliation_runs.bill_date', 'reconciliation_runs.attempt'],
                            name='fk_reconciliation_differences_run'))
    op.create_index('ix_reconciliation_differences_out_trade_no', 'reconciliation_differences', ['out_trade_no'])
    op.create_index('uq_reconciliation_differences_seq', 'reconciliation_differences',
                    ['bill_date', 'attempt', 'seq'], unique=True)


def downgrade() -> None:
    op.drop_table('reconciliation_differences')
    op.drop_table('reconciliation_runs')
    op.drop_table('reconciliation_bill_rows')
    op.drop_table('reconciliation_bills')
