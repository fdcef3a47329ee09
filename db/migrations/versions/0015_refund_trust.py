"""refunds you can trust: the refund's workflow start is recorded (the sweep starts any refund
left without one), and every review has a deadline and a recorded reviewer

Revision ID: 0015
Revises: 0017
Create Date: 2026-12-03 08:40:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0015'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('refunds', sa.Column('workflow_started_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('refunds', sa.Column('review_deadline_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('refunds', sa.Column('reviewed_by_user_id', sa.BigInteger(), sa.ForeignKey('users.id'),
                                       nullable=True))
    op.add_column('refunds', sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True))
    # refunds made before this revision were started by the request that made them
    op.execute("UPDATE refunds SET workflow_started_at = created_at")
    op.create_index('ix_refunds_unstarted', 'refunds', ['created_at'],
                    postgresql_where=sa.text('workflow_started_at IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_refunds_unstarted', table_name='refunds')
    for column in ('reviewed_at', 'reviewed_by_user_id', 'review_deadline_at', 'workflow_started_at'):
        op.drop_column('refunds', column)
