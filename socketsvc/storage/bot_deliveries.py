"""Visitor messages given to external bot workers (`/bot`), shared by every process.

A row is `pending` until a process claims it for one of its workers (`claimed`, with a lease),
and `done` once the worker answered. A worker that disconnects, or whose lease runs out, gives
its rows back to `pending` for another worker. Only the oldest unfinished row of a conversation
can be claimed, so a conversation's messages reach the bot in order, one at a time. PostgreSQL
claims with `FOR UPDATE SKIP LOCKED` (processes claiming together take different rows); SQLite
has one writer at a time. Done rows are kept for an hour (a late reply from a worker whose
lease ran out is told the delivery went to another), then purged.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from socketsvc.domain.models import BotDelivery, utcnow
from socketsvc.storage.store import Store
from socketsvc.storage.tables import bot_deliveries as d
from socketsvc.storage.tables import conversations

PENDING, CLAIMED, DONE = "pending", "claimed", "done"
KEEP_DONE = timedelta(hours=1)


class BotDeliveryStore:
    """`ports.BotDeliveries` over the service's database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, delivery_id: str, conversation_id: str, seq: int, bot: str) -> None:
        """A new pending delivery (a repeated id adds nothing)."""
        now = utcnow()
        row = {
            "id": delivery_id,
            "conversation_id": conversation_id,
            "seq": seq,
            "bot": bot,
            "state": PENDING,
            "attempts": 0,
            "created_at": now,
            "available_at": now,
        }
        if self.store.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
        async with self.store.write() as conn:
            await conn.execute(insert(d).values(**row).on_conflict_do_nothing())

    async def claim(
        self, bot: str, worker: str, limit: int, lease: float, regrab: float = 1.0
    ) -> list[BotDelivery]:
        """Up to `limit` pending deliveries of `bot`, now claimed by `worker` until the lease
        ends; a delivery `worker` gave back is left to the other workers for `regrab` seconds."""
        now = utcnow()
        outer = d.alias("candidate")
        first = sa.select(sa.func.min(d.c.seq)).where(
            d.c.conversation_id == outer.c.conversation_id,
            d.c.state.in_([PENDING, CLAIMED]),
        )
        candidates = (
            sa.select(outer.c.id)
            .where(
                outer.c.bot == bot,
                outer.c.state == PENDING,
                outer.c.seq == first.scalar_subquery(),
                outer.c.conversation_id.in_(
                    sa.select(conversations.c.id).where(conversations.c.state == "bot")
                ),
                sa.or_(
                    outer.c.last_worker.is_(None),
                    outer.c.last_worker != worker,
                    outer.c.available_at < now - timedelta(seconds=regrab),
                ),
            )
            .order_by(outer.c.available_at)
            .limit(limit)
        )
        if not self.store.is_sqlite:
            candidates = candidates.with_for_update(skip_locked=True, of=outer)
        # A cheap look first: most polls find nothing and must not take the write lock.
        if not await self._any(d.c.bot == bot, d.c.state == PENDING):
            return []
        async with self.store.write() as conn:
            ids = [row[0] for row in (await conn.execute(candidates)).all()]
            if not ids:
                return []
            rows = (
                await conn.execute(
                    d.update()
                    .where(d.c.id.in_(ids), d.c.state == PENDING)
                    .values(
                        state=CLAIMED,
                        worker=worker,
                        attempts=d.c.attempts + 1,
                        lease_until=now + timedelta(seconds=lease),
                    )
                    .returning(*d.c)
                )
            ).all()
        return sorted((_delivery(r._mapping) for r in rows), key=lambda x: x.seq)

    async def held(self, delivery_id: str, worker: str) -> BotDelivery | None:
        """The delivery, if `worker` holds it now or answered it."""
        query = d.select().where(
            d.c.id == delivery_id, d.c.worker == worker, d.c.state.in_([CLAIMED, DONE])
        )
        async with self.store.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _delivery(row._mapping)

    async def complete(self, delivery_id: str, worker: str) -> bool:
        """Mark the delivery `worker` holds as done; False if it does not hold it."""
        query = (
            d.update()
            .where(d.c.id == delivery_id, d.c.worker == worker, d.c.state == CLAIMED)
            .values(state=DONE, lease_until=None)
        )
        async with self.store.write() as conn:
            return bool((await conn.execute(query)).rowcount)

    async def release_worker(self, worker: str) -> int:
        """Give back every delivery `worker` holds (it disconnected); how many."""
        return await self._release(d.c.worker == worker)

    async def holding(self, worker: str) -> set[str]:
        """The deliveries `worker` holds now."""
        query = sa.select(d.c.id).where(d.c.worker == worker, d.c.state == CLAIMED)
        async with self.store.read() as conn:
            return {row[0] for row in (await conn.execute(query)).all()}

    async def release_expired(self) -> list[tuple[str, str]]:
        """Give back the deliveries whose lease ran out: (delivery, worker that held it)."""
        if not await self._any(d.c.state == CLAIMED, d.c.lease_until < utcnow()):
            return []
        query = (
            d.update()
            .where(d.c.state == CLAIMED, d.c.lease_until < utcnow())
            .values(**_released())
            .returning(d.c.id, d.c.last_worker)
        )
        async with self.store.write() as conn:
            return [(row[0], row[1]) for row in (await conn.execute(query)).all()]

    async def take_stale(self, bot: str, waited: float) -> list[BotDelivery]:
        """Pending deliveries of `bot` no worker took for `waited` seconds, marked done (for
        the fallback: each is returned to exactly one caller)."""
        cutoff = utcnow() - timedelta(seconds=waited)
        if not await self._any(d.c.bot == bot, d.c.state == PENDING, d.c.available_at < cutoff):
            return []
        query = (
            d.update()
            .where(
                d.c.bot == bot,
                d.c.state == PENDING,
                d.c.available_at < cutoff,
            )
            .values(state=DONE, worker=None)
            .returning(*d.c)
        )
        async with self.store.write() as conn:
            rows = (await conn.execute(query)).all()
        return sorted((_delivery(r._mapping) for r in rows), key=lambda x: x.seq)

    async def purge(self) -> int:
        """Delete done deliveries older than an hour."""
        query = d.delete().where(d.c.state == DONE, d.c.created_at < utcnow() - KEEP_DONE)
        async with self.store.write() as conn:
            return int((await conn.execute(query)).rowcount or 0)

    async def _any(self, *conditions: sa.ColumnElement[bool]) -> bool:
        """Whether a row matches: a read, so that idle sweeps never take the write lock."""
        async with self.store.read() as conn:
            return (
                await conn.execute(sa.select(d.c.id).where(*conditions).limit(1))
            ).first() is not None

    async def _release(self, condition: sa.ColumnElement[bool]) -> int:
        query = d.update().where(d.c.state == CLAIMED, condition).values(**_released())
        async with self.store.write() as conn:
            return int((await conn.execute(query)).rowcount or 0)


def _released() -> dict[str, Any]:
    return {
        "state": PENDING,
        "last_worker": d.c.worker,
        "worker": None,
        "lease_until": None,
        "available_at": utcnow(),
    }


def _delivery(row: sa.RowMapping) -> BotDelivery:
    return BotDelivery(
        id=row["id"],
        conversation_id=row["conversation_id"],
        seq=row["seq"],
        bot=row["bot"],
        state=row["state"],
        worker=row["worker"],
        attempts=row["attempts"],
    )
