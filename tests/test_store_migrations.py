"""The migrations create exactly the schema the code queries."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from server.config import normalise_database_url
from server.store.db import current_revision, make_engine, upgrade
from server.store.partitions import schema_filter
from server.store.tables import metadata


def test_migrations_match_tables(db_url: str) -> None:
    url = normalise_database_url(db_url)
    upgrade(url)
    upgrade(url)  # idempotent
    assert current_revision(url) is not None
    engine = make_engine(url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": schema_filter})
        diff = compare_metadata(ctx, metadata)
    engine.dispose()
    assert diff == []
