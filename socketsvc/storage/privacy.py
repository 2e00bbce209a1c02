"""Personal data in SQL: a visitor's export, its erasure, and retention's batched deletions.

Every row of a visitor is reached from `visitors.id`: its conversations (`visitor_id`), their
messages and read marks (`conversation_id`), and the visitor's own read marks
(`reader_role='visitor'`, `reader_id`). `agents` and `agent_connections` hold agents only.
`erased_visitors` keeps the ids of erased visitors (no personal data) so their tokens are refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from socketsvc.domain.models import Role, State, utcnow
from socketsvc.storage.store import Store
from socketsvc.storage.tables import (
    bot_deliveries,
    conversations,
    erased_visitors,
    messages,
    read_marks,
    visitors,
)


class PrivacyStore:
    """`domain.ports.PrivacyRecords` over the `Store`'s connections."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def visitor_record(self, visitor_id: str) -> dict[str, Any] | None:
        """The visitor and every conversation of it, with messages and read marks, or None."""
        async with self.store.read() as conn:
            row = (await conn.execute(visitors.select().where(visitors.c.id == visitor_id))).first()
            if row is None:
                return None
            rows = (
                await conn.execute(
                    conversations.select()
                    .where(conversations.c.visitor_id == visitor_id)
                    .order_by(conversations.c.created_at, conversations.c.id)
                )
            ).all()
            ids = [c.id for c in rows]
            found_messages = (
                (
                    await conn.execute(
                        messages.select()
                        .where(messages.c.conversation_id.in_(ids))
                        .order_by(messages.c.conversation_id, messages.c.seq)
                    )
                ).all()
                if ids
                else []
            )
            marks = (
                (
                    await conn.execute(
                        read_marks.select()
                        .where(read_marks.c.conversation_id.in_(ids))
                        .order_by(
                            read_marks.c.conversation_id,
                            read_marks.c.reader_role,
                            read_marks.c.reader_id,
                        )
                    )
                ).all()
                if ids
                else []
            )
        by_conversation: dict[str, dict[str, Any]] = {}
        for c in rows:
            by_conversation[c.id] = {
                "id": c.id,
                "state": c.state,
                "agent_id": c.agent_id,
                "agent_name": c.agent_name,
                "created_at": _stamp(c.created_at),
                "updated_at": _stamp(c.updated_at),
                "queued_at": None if c.queued_at is None else _stamp(c.queued_at),
                "messages": [],
                "read_marks": [],
            }
        for m in found_messages:
            by_conversation[m.conversation_id]["messages"].append(
                {
                    "id": m.id,
                    "seq": m.seq,
                    "client_id": m.client_id,
                    "sender": {"role": m.sender_role, "id": m.sender_id, "name": m.sender_name},
                    "text": m.text,
                    "created_at": _stamp(m.created_at),
                }
            )
        for r in marks:
            by_conversation[r.conversation_id]["read_marks"].append(
                {
                    "role": r.reader_role,
                    "id": r.reader_id,
                    "seq": r.seq,
                    "updated_at": _stamp(r.updated_at),
                }
            )
        return {
            "visitor": {"id": row.id, "name": row.name, "created_at": _stamp(row.created_at)},
            "conversations": list(by_conversation.values()),
        }

    async def erase_visitor(self, visitor_id: str) -> dict[str, int] | None:
        """Delete every row of the visitor and keep its id in `erased_visitors` (so that its
        tokens are refused), in one transaction; the counts, or None if unknown."""
        async with self.store.write() as conn:
            found = (
                await conn.execute(sa.select(visitors.c.id).where(visitors.c.id == visitor_id))
            ).first()
            if found is None:
                return None
            ids = sa.select(conversations.c.id).where(conversations.c.visitor_id == visitor_id)
            counts = await _delete_conversations(conn, ids)
            # The visitor's marks are all in its own conversations; this also catches any other.
            counts["read_marks"] += (
                await conn.execute(
                    read_marks.delete().where(
                        read_marks.c.reader_role == Role.VISITOR.value,
                        read_marks.c.reader_id == visitor_id,
                    )
                )
            ).rowcount
            counts["visitors"] = (
                await conn.execute(visitors.delete().where(visitors.c.id == visitor_id))
            ).rowcount
            await conn.execute(erased_visitors.insert().values(id=visitor_id, erased_at=utcnow()))
        return counts

    async def delete_resolved_before(self, cutoff: datetime, limit: int) -> dict[str, int]:
        """Delete up to `limit` resolved conversations last changed before `cutoff`, with their
        messages and read marks, in one transaction; the counts deleted."""
        async with self.store.write() as conn:
            query = (
                sa.select(conversations.c.id)
                .where(
                    conversations.c.state == State.RESOLVED.value,
                    conversations.c.updated_at < cutoff,
                )
                .order_by(conversations.c.updated_at)
                .limit(limit)
            )
            if not self.store.is_sqlite:
                # Rows another transaction holds (being changed right now) wait for next time.
                query = query.with_for_update(skip_locked=True)
            ids = [row.id for row in await conn.execute(query)]
            if not ids:
                return {"conversations": 0, "messages": 0, "read_marks": 0}
            return await _delete_conversations(conn, ids)


async def _delete_conversations(
    conn: AsyncConnection, ids: list[str] | sa.Select[tuple[str]]
) -> dict[str, int]:
    """Delete the conversations `ids` (a list or a subquery) and their messages and marks
    (and the `/bot` deliveries of their messages, which hold ids only, uncounted)."""
    await conn.execute(bot_deliveries.delete().where(bot_deliveries.c.conversation_id.in_(ids)))
    marks = await conn.execute(read_marks.delete().where(read_marks.c.conversation_id.in_(ids)))
    stored = await conn.execute(messages.delete().where(messages.c.conversation_id.in_(ids)))
    gone = await conn.execute(conversations.delete().where(conversations.c.id.in_(ids)))
    return {
        "conversations": gone.rowcount,
        "messages": stored.rowcount,
        "read_marks": marks.rowcount,
    }


def _stamp(moment: datetime) -> str:
    return moment.isoformat() if moment.tzinfo is not None else moment.isoformat() + "+00:00"
