"""operator suspension and reinstatement of single products

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 01:10:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('products', sa.Column('suspended_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('products', 'suspended_reason')
