"""promoter levels, team and regional bonuses, fake-trade findings and frozen commission (revision reserved; its schema lands with its feature)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 23:00:00
"""
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
