"""Accounts and security: login sessions, login attempts, credential state,
integrator API keys, audit log.

Revision ID: 0002_accounts
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_accounts"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_session",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("clinician_id", sa.Integer, sa.ForeignKey("clinician.id", ondelete="CASCADE"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_login_session_clinician", "login_session", ["clinician_id"])
    op.create_table(
        "login_attempt",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("t_ms", sa.BigInteger, nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
    )
    op.create_index("ix_login_attempt_email", "login_attempt", ["email", "t_ms"])
    op.create_index("ix_login_attempt_ip", "login_attempt", ["ip", "t_ms"])
    op.create_table(
        "credential_state",
        sa.Column(
            "clinician_id", sa.Integer, sa.ForeignKey("clinician.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("must_change", sa.Boolean, nullable=False),
        sa.Column("changed_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_by", sa.Integer, sa.ForeignKey("clinician.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("revoked_ms", sa.BigInteger, nullable=True),
        sa.Column("last_used_ms", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("t_ms", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("actor_clinician_id", sa.Integer, nullable=True),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("client_id", sa.Integer, nullable=True),
        sa.Column("client_code", sa.String(64), nullable=True),
        sa.Column("session_id", sa.Integer, nullable=True),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("ip", sa.String(64), nullable=False, server_default=""),
    )
    op.create_index("ix_audit_log_t", "audit_log", ["t_ms"])
    op.create_index("ix_audit_log_client", "audit_log", ["client_id", "t_ms"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("api_key")
    op.drop_table("credential_state")
    op.drop_table("login_attempt")
    op.drop_table("login_session")
