"""Baseline: the schema `metadata.create_all` made before migrations (release 86c724c).

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-02

Written out explicitly (not derived from `tables.py`, which will move on): a database at this
revision has exactly these tables, columns, keys and indexes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "visitors",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("visitor_id", sa.String(64), sa.ForeignKey("visitors.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("agent_id", sa.String(200), nullable=True),
        sa.Column("agent_name", sa.String(200), nullable=True),
        sa.Column("queued_at", Stamp, nullable=True),
        sa.Column("bot_fallbacks", sa.Integer, nullable=False),
        sa.Column("human_offered", sa.Boolean, nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
    )
    op.create_index("ix_conversations_visitor", "conversations", ["visitor_id", "created_at"])
    op.create_index("ix_conversations_state", "conversations", ["state", "queued_at"])
    op.create_index("ix_conversations_agent", "conversations", ["agent_id", "state"])
    op.create_table(
        "messages",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "conversation_id", sa.String(64), sa.ForeignKey("conversations.id"), nullable=False
        ),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("sender_role", sa.String(16), nullable=False),
        sa.Column("sender_id", sa.String(200), nullable=False),
        sa.Column("sender_name", sa.String(200), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.UniqueConstraint("conversation_id", "seq", name="uq_messages_seq"),
        sa.UniqueConstraint(
            "conversation_id",
            "sender_role",
            "sender_id",
            "client_id",
            name="uq_messages_sender_client",
        ),
    )
    op.create_table(
        "read_marks",
        sa.Column(
            "conversation_id", sa.String(64), sa.ForeignKey("conversations.id"), primary_key=True
        ),
        sa.Column("reader_role", sa.String(16), primary_key=True),
        sa.Column("reader_id", sa.String(200), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
    )
    op.create_table(
        "agents",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_seen_at", Stamp, nullable=False),
    )
    op.create_table(
        "agent_connections",
        sa.Column("sid", sa.String(64), primary_key=True),
        sa.Column("agent_id", sa.String(200), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("seen_at", Stamp, nullable=False),
    )
    op.create_index(
        "ix_agent_connections_agent_id", "agent_connections", ["agent_id"], unique=False
    )
    op.create_index("ix_agent_connections_node_id", "agent_connections", ["node_id"], unique=False)


def downgrade() -> None:
    for table in (
        "agent_connections",
        "agents",
        "read_marks",
        "messages",
        "conversations",
        "visitors",
    ):
        op.drop_table(table)
