from alembic import context
from sqlalchemy import create_engine, pool

from db.all_models import Base
from db.session import database_url
from settings import get_settings

config = context.config
url = config.attributes.get("url") or database_url(get_settings())

connectable = create_engine(url, poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
