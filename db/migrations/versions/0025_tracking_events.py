"""tracking trace: every carrier event of a parcel, once

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-04 01:30:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tracking_events',
    sa.Column('id', sa.BigInteger(), primary_key=True),
    sa.Column('carrier', sa.String(32), nullable=False),
    sa.Column('waybill_no', sa.String(64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('context', sa.Text(), nullable=False),
    sa.Column('location', sa.String(200), server_default='', nullable=False),
    sa.Column('event_key', sa.String(64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.UniqueConstraint('event_key', name='tracking_events_event_key_key'),
    )
    op.create_index('ix_tracking_events_waybill', 'tracking_events', ['carrier', 'waybill_no', 'at'])


def downgrade() -> None:
    op.drop_index('ix_tracking_events_waybill', table_name='tracking_events')
    op.drop_table('tracking_events')
