"""risk: order fingerprints (keyed hashes) and risk flags for support review

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:40:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def _now():
    return sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False)


def upgrade() -> None:
    op.create_table('order_fingerprints',
    sa.Column('order_no', sa.String(32), sa.ForeignKey('orders.order_no'), primary_key=True),
    sa.Column('buyer_user_id', sa.BigInteger(), sa.ForeignKey('users.id'), nullable=False),
    sa.Column('device_fp', sa.String(64), nullable=True),
    sa.Column('ip_fp', sa.String(64), nullable=True),
    sa.Column('address_fp', sa.String(64), nullable=True),
    _now())
    op.create_index('ix_order_fp_device', 'order_fingerprints', ['device_fp', 'created_at'])
    op.create_index('ix_order_fp_ip', 'order_fingerprints', ['ip_fp', 'created_at'])
    op.create_index('ix_order_fp_address', 'order_fingerprints', ['address_fp', 'created_at'])

    op.create_table('risk_flags',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('kind', sa.String(24), nullable=False, index=True),
    sa.Column('subject_type', sa.String(12), nullable=False),
    sa.Column('subject_id', sa.String(40), nullable=False),
    sa.Column('buyer_user_id', sa.BigInteger(), sa.ForeignKey('users.id'), nullable=True, index=True),
    sa.Column('order_no', sa.String(32), nullable=True, index=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('related', postgresql.JSONB(), nullable=False, server_default='{}'),
    sa.Column('status', sa.String(12), nullable=False, server_default='open', index=True),
    sa.Column('reviewed_by', sa.BigInteger(), sa.ForeignKey('users.id'), nullable=True),
    sa.Column('review_note', sa.Text(), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    _now(),
    sa.UniqueConstraint('kind', 'subject_type', 'subject_id', name='uq_risk_flag_subject'))


def downgrade() -> None:
    op.drop_table('risk_flags')
    op.drop_table('order_fingerprints')
