"""team bonus taken back when the sales it was paid on are refunded

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 01:10:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
