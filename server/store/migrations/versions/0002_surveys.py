"""Surveys: single-use survey links and scored ratings.

Revision ID: 0002_surveys
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_surveys"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "survey_link",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("session.id", ondelete="CASCADE"), nullable=False),
        sa.Column("respondent", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("instruments", sa.Text, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("used_ms", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("session_id", "respondent", name="uq_survey_link_session_respondent"),
    )
    op.create_table(
        "rating",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("session.id", ondelete="CASCADE"), nullable=False),
        sa.Column("respondent", sa.String(16), nullable=False),
        sa.Column("instrument_id", sa.String(64), nullable=False),
        sa.Column("instrument_version", sa.String(40), nullable=False),
        sa.Column("answers", sa.Text, nullable=False),
        sa.Column("total", sa.Float, nullable=True),
        sa.Column("mean", sa.Float, nullable=True),
        sa.Column("subscales", sa.Text, nullable=False, server_default="{}"),
        sa.Column("submitted_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint(
            "session_id", "respondent", "instrument_id", name="uq_rating_session_respondent_instrument"
        ),
    )


def downgrade() -> None:
    op.drop_table("rating")
    op.drop_table("survey_link")
