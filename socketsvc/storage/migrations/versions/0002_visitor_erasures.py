"""Erasure markers: `erased_visitors`, the ids of visitors erased on request.

Revision ID: 0002_visitor_erasures
Revises: 0001_baseline
Create Date: 2026-12-02

From this release a visitor is stored at its first message, not at connect, so "no visitor
row" no longer means "erased": an erased visitor's id is kept here and its tokens are refused.
Visitors erased before this revision left no marker; their tokens are honoured again as those
of a visitor who has not written yet (none of their data exists any more).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_visitor_erasures"
down_revision: str | None = "0001_baseline"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "erased_visitors",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("erased_visitors")
