"""revocable logins (auth_sessions) and the keyed hash of a promoter's full real name

Revision ID: 0017
Revises: 0022
Create Date: 2026-12-03 08:50:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0017'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('auth_sessions',
    sa.Column('id', sa.String(32), primary_key=True),
    sa.Column('user_id', sa.BigInteger(), sa.ForeignKey('users.id'), nullable=False),
    sa.Column('role', sa.String(20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_auth_sessions_user_id', 'auth_sessions', ['user_id'])
    # onboarding before this kept only the masked name: those promoters re-verify for a
    # withdrawal that needs the real name (never compared by the masked form)
    op.add_column('promoter_profiles', sa.Column('real_name_hash', sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column('promoter_profiles', 'real_name_hash')
    op.drop_table('auth_sessions')
