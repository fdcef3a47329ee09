"""the outbox finds rows left `sending` by a crash through their own partial index

Revision ID: 0021
Revises: 0014
Create Date: 2026-12-03 08:35:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0021'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_notifications_sending', 'notifications', ['sent_at'],
                    postgresql_where=sa.text("delivery_status = 'sending'"))


def downgrade() -> None:
    op.drop_index('ix_notifications_sending', table_name='notifications')
