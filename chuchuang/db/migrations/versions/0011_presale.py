"""pre-sale orders: deposit and balance payments (revision reserved; its schema lands with its feature)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 23:00:00
"""
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
