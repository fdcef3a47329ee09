"""withdrawals: promoters withdraw commission to WeChat change (商家转账 bills)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 09:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

STATUSES = ('REQUESTED', 'REVIEWING', 'TRANSFERRING', 'WAIT_USER_CONFIRM', 'CANCELLING',
            'SUCCESS', 'FAILED', 'CANCELLED', 'REJECTED')


def upgrade() -> None:
    op.create_table('withdrawals',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('promoter_id', sa.BigInteger(), sa.ForeignKey('promoters.id'), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(24), nullable=False, index=True),
    # the client's Idempotency-Key: a retried POST is the same withdrawal
    sa.Column('request_key', sa.String(80), nullable=True),
    # the calendar day (settlement time zone) the daily limit counts it in
    sa.Column('local_day', sa.Date(), nullable=False),
    sa.Column('needs_review', sa.Boolean(), nullable=False, server_default=sa.text('false')),
    sa.Column('review_decision', sa.String(10), nullable=True),
    sa.Column('review_note', sa.Text(), nullable=False, server_default=''),
    sa.Column('reviewed_by_user_id', sa.BigInteger(), sa.ForeignKey('users.id'), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    # WeChat Pay transfer bill: out_bill_no recorded before the call (intent first)
    sa.Column('out_bill_no', sa.String(32), nullable=True, unique=True),
    sa.Column('transfer_bill_no', sa.String(64), nullable=True),
    sa.Column('bill_state', sa.String(24), nullable=True),
    sa.Column('package_info', sa.Text(), nullable=True),
    sa.Column('fail_reason', sa.String(64), nullable=True),
    # the payee's real name, needed by WeChat Pay from 2,000 yuan; cleared once finished
    sa.Column('payee_name', sa.String(30), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('amount_fen > 0', name='ck_withdrawals_amount'),
    sa.CheckConstraint("status IN (%s)" % ",".join(f"'{s}'" for s in STATUSES), name='ck_withdrawals_status'),
    sa.CheckConstraint("review_decision IS NULL OR review_decision IN ('approve','reject')",
                       name='ck_withdrawals_review_decision'),
    sa.UniqueConstraint('promoter_id', 'request_key', name='uq_withdrawals_request_key'),
    )
    op.create_index('ix_withdrawals_promoter_day', 'withdrawals', ['promoter_id', 'local_day'])


def downgrade() -> None:
    op.drop_index('ix_withdrawals_promoter_day', 'withdrawals')
    op.drop_table('withdrawals')
