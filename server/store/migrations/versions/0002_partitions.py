"""Partitions: on PostgreSQL, the sample table partitioned by week of its
participant's creation (server/store/partitions.py); nothing on SQLite.

Converts an existing database in one transaction: the old table is renamed,
the partitioned one created like it (whatever columns the other migrations
have added by then, in their order) plus ``part_ms``, the partitions every
participant needs created, the rows copied with their participant's created
time, and the old table dropped.

Revision ID: 0002_partitions
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from server.store.partitions import CREATE_FUNCTIONS, CREATE_TRIGGER, DROP_FUNCTIONS, PERIOD_MS

revision = "0002_partitions"
down_revision = "0001"
branch_labels = None
depends_on = None


def _columns(table: str) -> list[str]:
    rows = op.get_bind().execute(text(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = :t ORDER BY ordinal_position"), {"t": table})
    return [f'"{name}"' for (name,) in rows]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE sample RENAME TO sample_unpartitioned")
    op.execute("ALTER INDEX sample_pkey RENAME TO sample_unpartitioned_pkey")
    # LIKE: the same columns, types, NOT NULLs and defaults, in the same
    # order, including any a migration on another branch added first.
    op.execute("""
        CREATE TABLE sample (LIKE sample_unpartitioned INCLUDING DEFAULTS,
            part_ms bigint NOT NULL,
            CONSTRAINT sample_pkey PRIMARY KEY (participant_id, seq, part_ms),
            CONSTRAINT sample_participant_id_fkey FOREIGN KEY (participant_id)
                REFERENCES participant (id) ON DELETE CASCADE
        ) PARTITION BY RANGE (part_ms)""")
    op.execute(CREATE_FUNCTIONS)
    op.execute(CREATE_TRIGGER)
    # Every existing participant's week and the one after it, and this week
    # and the next for participants still to come.
    op.execute(f"SELECT bondline_sample_partition(w) FROM (SELECT DISTINCT bondline_sample_week(created_ms) AS w "
               f"FROM participant UNION SELECT bondline_sample_week(created_ms) + {PERIOD_MS} FROM participant "
               f"UNION SELECT (extract(epoch FROM now()) * 1000)::bigint "
               f"UNION SELECT (extract(epoch FROM now()) * 1000)::bigint + {PERIOD_MS}) weeks")
    cols = _columns("sample_unpartitioned")
    op.execute(f"INSERT INTO sample ({', '.join(cols)}, part_ms) SELECT {', '.join('s.' + c for c in cols)}, "
               "p.created_ms FROM sample_unpartitioned s JOIN participant p ON p.id = s.participant_id")
    op.execute("DROP TABLE sample_unpartitioned")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE TABLE sample_plain (LIKE sample INCLUDING DEFAULTS)")
    op.execute("ALTER TABLE sample_plain DROP COLUMN part_ms")
    cols = _columns("sample_plain")
    op.execute(f"INSERT INTO sample_plain ({', '.join(cols)}) SELECT {', '.join(cols)} FROM sample")
    op.execute("DROP TABLE sample")
    op.execute(DROP_FUNCTIONS)
    op.execute("ALTER TABLE sample_plain RENAME TO sample")
    op.execute("ALTER TABLE sample ADD CONSTRAINT sample_pkey PRIMARY KEY (participant_id, seq)")
    op.execute("ALTER TABLE sample ADD CONSTRAINT sample_participant_id_fkey FOREIGN KEY (participant_id) "
               "REFERENCES participant (id) ON DELETE CASCADE")
