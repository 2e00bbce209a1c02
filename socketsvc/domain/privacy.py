"""Personal data: a visitor's export and erasure, and the retention of resolved conversations.

Erasure leaves no row of the visitor's data (see storage/privacy.py for the tables); only its id
is kept, as an erasure marker. A visitor is stored only once it writes (a page view stores
nothing), so a missing visitor row is normal: it is the marker that makes the conversation service
refuse the visitor's tokens at connect and its next message (`VisitorErased`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from socketsvc.domain.errors import NotFound, Unavailable
from socketsvc.domain.models import utcnow
from socketsvc.domain.ports import PrivacyRecords
from socketsvc.domain.tokens import TokenService
from socketsvc.runtime import metrics

log = logging.getLogger(__name__)

RETENTION_BATCH = 100
"""Conversations deleted per transaction: each batch holds SQLite's writer lock briefly."""
RETENTION_PAUSE = 0.2
"""Seconds between two batches, so that traffic gets the database in between."""
RETENTION_INTERVAL = 3600.0
"""Seconds between two retention runs."""
RETENTION_FIRST_DELAY = 60.0
"""Seconds after start before the first run (startup and reconnecting clients first)."""


class PrivacyService:
    """Export and erase a visitor; delete resolved conversations older than `retention_days`."""

    def __init__(
        self,
        records: PrivacyRecords,
        tokens: TokenService,
        retention_days: int = 0,
        *,
        batch: int = RETENTION_BATCH,
        pause: float = RETENTION_PAUSE,
        now: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.records = records
        self.tokens = tokens
        self.retention_days = retention_days
        self.batch = batch
        self.pause = pause
        self.now = now
        self.sleep = sleep

    async def export(self, visitor_id: str) -> dict[str, Any]:
        """The visitor's conversations with messages, read marks, states and timestamps."""
        record = await self.records.visitor_record(visitor_id)
        if record is None:
            raise NotFound("no such visitor")
        return record

    async def erase(self, visitor_id: str) -> dict[str, int]:
        """Delete every row of the visitor; the rows deleted per table."""
        counts = await self.records.erase_visitor(visitor_id)
        if counts is None:
            raise NotFound("no such visitor")
        metrics.VISITORS_ERASED.inc()
        log.info(
            "visitor erased: %d conversations, %d messages, %d read marks",
            counts["conversations"],
            counts["messages"],
            counts["read_marks"],
        )
        return counts

    # retention --------------------------------------------------------------------------------

    @property
    def retention_enabled(self) -> bool:
        return self.retention_days > 0

    async def purge(self) -> dict[str, int]:
        """One retention run: batches until none is left; the totals. Logs one INFO line."""
        totals = {"conversations": 0, "messages": 0, "read_marks": 0, "batches": 0}
        if not self.retention_enabled:
            return totals
        cutoff = self.now() - timedelta(days=self.retention_days)
        while True:
            counts = await self.records.delete_resolved_before(cutoff, self.batch)
            totals["batches"] += 1
            for key in ("conversations", "messages", "read_marks"):
                totals[key] += counts[key]
            metrics.RETENTION_DELETED.inc(counts["conversations"])
            if counts["conversations"] < self.batch:
                break
            await self.sleep(self.pause)
        log.info(
            "retention (%d days, resolved before %s): deleted %d conversations, %d messages, "
            "%d read marks in %d batches",
            self.retention_days,
            cutoff.isoformat(timespec="seconds"),
            totals["conversations"],
            totals["messages"],
            totals["read_marks"],
            totals["batches"],
        )
        return totals

    async def run(
        self, first_delay: float = RETENTION_FIRST_DELAY, interval: float = RETENTION_INTERVAL
    ) -> None:
        """The background task: a run shortly after start, then one every `interval`."""
        if not self.retention_enabled:
            return
        await self.sleep(first_delay)
        while True:
            try:
                await self.purge()
            except asyncio.CancelledError:
                raise
            except Unavailable:
                log.warning("retention run skipped: the database is unavailable")
            except Exception:
                log.exception("retention run failed")
            await self.sleep(interval)
