"""Alembic environment: runs migrations against the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from server.store.partitions import schema_filter
from server.store.tables import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url must be set"

engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode copies tables.
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
        include_object=schema_filter,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
