from alembic import context
from sqlalchemy import create_engine, pool

from chuchuang.db.all_models import Base
from chuchuang.db.session import database_url
from chuchuang.settings import get_settings

config = context.config
url = config.attributes.get("url") or database_url(get_settings())

connectable = create_engine(url, poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
