"""reconciliation: WeChat Pay daily bill runs and their differences (revision reserved; its schema lands with its feature)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 23:00:00
"""
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
