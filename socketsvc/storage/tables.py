"""The schema. One source of truth for conversation state, shared by every process."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

Stamp = sa.DateTime(timezone=True)

visitors = sa.Table(
    "visitors",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
)

erased_visitors = sa.Table(
    "erased_visitors",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("erased_at", Stamp, nullable=False),
)
"""Visitor ids erased on request: their tokens are refused (a visitor is stored only once it
writes, so a missing `visitors` row does not mean erased)."""

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("visitor_id", sa.String(64), sa.ForeignKey("visitors.id"), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("last_seq", sa.Integer, nullable=False, default=0),
    sa.Column("agent_id", sa.String(200), nullable=True),
    sa.Column("agent_name", sa.String(200), nullable=True),
    sa.Column("queued_at", Stamp, nullable=True),
    sa.Column("bot_fallbacks", sa.Integer, nullable=False, default=0),
    sa.Column("human_offered", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Index("ix_conversations_visitor", "visitor_id", "created_at"),
    sa.Index("ix_conversations_state", "state", "queued_at"),
    sa.Index("ix_conversations_agent", "agent_id", "state"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("conversation_id", sa.String(64), sa.ForeignKey("conversations.id"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("client_id", sa.String(128), nullable=True),
    sa.Column("sender_role", sa.String(16), nullable=False),
    sa.Column("sender_id", sa.String(200), nullable=False),
    sa.Column("sender_name", sa.String(200), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.UniqueConstraint("conversation_id", "seq", name="uq_messages_seq"),
    # NULL client_ids never collide (SQLite and PostgreSQL agree), so system/bot messages pass.
    sa.UniqueConstraint(
        "conversation_id", "sender_role", "sender_id", "client_id", name="uq_messages_sender_client"
    ),
)

read_marks = sa.Table(
    "read_marks",
    metadata,
    sa.Column(
        "conversation_id", sa.String(64), sa.ForeignKey("conversations.id"), primary_key=True
    ),
    sa.Column("reader_role", sa.String(16), primary_key=True),
    sa.Column("reader_id", sa.String(200), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("last_seen_at", Stamp, nullable=False),
)

agent_connections = sa.Table(
    "agent_connections",
    metadata,
    sa.Column("sid", sa.String(64), primary_key=True),
    sa.Column("agent_id", sa.String(200), nullable=False, index=True),
    sa.Column("node_id", sa.String(64), nullable=False, index=True),
    sa.Column("seen_at", Stamp, nullable=False),
)

bot_deliveries = sa.Table(
    "bot_deliveries",
    metadata,
    # One row per visitor message given to an external bot (its id is the message's id); no
    # foreign key, so that erasing a visitor is not held up by the rows of its messages.
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("conversation_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("bot", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("worker", sa.String(200), nullable=True),
    sa.Column("last_worker", sa.String(200), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("available_at", Stamp, nullable=False),
    sa.Column("lease_until", Stamp, nullable=True),
    sa.Index("ix_bot_deliveries_waiting", "bot", "state", "available_at"),
    sa.Index("ix_bot_deliveries_conversation", "conversation_id", "state", "seq"),
)
