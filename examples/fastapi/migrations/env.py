"""Alembic environment: migrate the database named by DATABASE_URL (online mode only)."""

from alembic import context
from bookshelf.db import database_url
from bookshelf.models import Base
from sqlalchemy import create_engine, pool

config = context.config
if config.config_file_name is not None:
    from logging.config import fileConfig

    fileConfig(config.config_file_name)


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
