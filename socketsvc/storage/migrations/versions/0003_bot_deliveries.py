"""bot_deliveries: visitor messages given to external bot workers on `/bot`, with a lease.

Revision ID: 0003_bot_deliveries
Revises: 0002_visitor_erasures
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_bot_deliveries"
down_revision: str | None = "0002_visitor_erasures"
branch_labels: str | None = None
depends_on: str | None = None

Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bot_deliveries",
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
    )
    op.create_index("ix_bot_deliveries_waiting", "bot_deliveries", ["bot", "state", "available_at"])
    op.create_index(
        "ix_bot_deliveries_conversation", "bot_deliveries", ["conversation_id", "state", "seq"]
    )


def downgrade() -> None:
    op.drop_table("bot_deliveries")
