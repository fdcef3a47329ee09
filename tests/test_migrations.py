"""The migrations build exactly the schema the models describe: a column or index added to a
model without a migration (or the other way round) fails here, not in production."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from db.all_models import Base


def test_migrated_schema_matches_the_models(engine):
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    # alembic_version is Alembic's own table
    diff = [d for d in diff if not (d[0] == "remove_table" and d[1].name == "alembic_version")]
    assert diff == [], "\n".join(map(str, diff))


def test_0016_moves_promoter_notices_into_the_outbox_and_drops_the_unread_table(engine):
    """promoter_notifications was written and never read or sent: 0016 copies its rows into
    notifications (for the promoter's user, listed from then on, marked skipped: old news) and
    drops it."""
    import uuid

    import sqlalchemy as sa

    from db.migrate import upgrade

    name = f"mig0016_{uuid.uuid4().hex[:8]}"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = engine.url.set(database=name).render_as_string(hide_password=False)
    other = sa.create_engine(url)
    try:
        upgrade(url, "0014")
        with other.begin() as c:
            user = c.execute(sa.text("INSERT INTO users (role, openid, display_name, active) VALUES ('promoter', 'oMIG16', 'p', true) "
                                     "RETURNING id")).scalar()
            promoter = c.execute(sa.text("INSERT INTO promoters (user_id, nickname, status, auto_payout) "
                                         "VALUES (:u, 'p', 'active', false) RETURNING id"), {"u": user}).scalar()
            c.execute(sa.text("INSERT INTO promoter_notifications (promoter_id, kind, message, idempotency_key) "
                              "VALUES (:p, 'assessment_result', 'cycle 1: passed', 'promoter:1:cycle:1:result')"),
                      {"p": promoter})
        upgrade(url, "0016")
        with other.connect() as c:
            rows = c.execute(sa.text("SELECT recipient_user_id, kind, subject_type, subject_id, delivery_status "
                                     "FROM notifications")).all()
            assert rows == [(user, "assessment_result", "promoter", str(promoter), "skipped")]
            assert c.execute(sa.text("SELECT to_regclass('promoter_notifications')")).scalar() is None
    finally:
        other.dispose()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(sa.text(f'DROP DATABASE "{name}"'))
