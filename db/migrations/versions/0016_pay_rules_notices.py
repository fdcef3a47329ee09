"""promoter notices move into the notification outbox; promoter_notifications (written, never
read or sent) is dropped

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 09:10:00

Rows already in promoter_notifications are copied into notifications for the promoter's user
(listed at GET /notifications from now on) as `skipped`: they are old news, not sent now.
"""
from alembic import op
import sqlalchemy as sa

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        INSERT INTO notifications (recipient_user_id, kind, subject_type, subject_id, message, idempotency_key,
                                   created_at, delivery_status, delivery_note)
        SELECT p.user_id, pn.kind, 'promoter', pn.promoter_id::text, pn.message, pn.idempotency_key,
               pn.created_at, 'skipped', 'written before promoter notices were sent'
        FROM promoter_notifications pn JOIN promoters p ON p.id = pn.promoter_id
        ON CONFLICT (idempotency_key) DO NOTHING
    """)
    op.drop_index(op.f('ix_promoter_notifications_promoter_id'), table_name='promoter_notifications')
    op.drop_table('promoter_notifications')


def downgrade() -> None:
    op.create_table('promoter_notifications',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('promoter_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=120), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['promoter_id'], ['promoters.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key')
    )
    op.create_index(op.f('ix_promoter_notifications_promoter_id'), 'promoter_notifications', ['promoter_id'],
                    unique=False)
