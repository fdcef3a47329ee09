"""the notification outbox wakes its sender: NOTIFY chuchuang_outbox on insert

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-04 06:35:00
"""
from alembic import op

revision = '0031'
down_revision = '0030'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # once per inserting statement; PostgreSQL delivers it at commit and folds repeats in one
    # transaction into one
    op.execute("""
        CREATE FUNCTION notify_outbox_written() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('chuchuang_outbox', '');
            RETURN NULL;
        END $$""")
    op.execute("CREATE TRIGGER notifications_written AFTER INSERT ON notifications "
               "FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox_written()")


def downgrade() -> None:
    op.execute("DROP TRIGGER notifications_written ON notifications")
    op.execute("DROP FUNCTION notify_outbox_written()")
