"""SQLite write-ahead-log checkpoints, off the commit path.

By default SQLite checkpoints inside the COMMIT that pushes the WAL past 1,000 pages: that
commit then copies the log into the database file and fsyncs it, and every message waiting for
the next commit waits for that too (tens of milliseconds under load). The service turns the
automatic checkpoint off on its connections (`PRAGMA wal_autocheckpoint=0`) and runs a PASSIVE
checkpoint from here every second instead; PASSIVE never blocks writers or readers.

A checkpoint alone does not keep the WAL file small: the next writer starts the log over from
its beginning only if the checkpoint copied *every* frame, and under steady traffic messages are
committed while it copies, so the log only ever grew (356-362 MB after some 20 s at 3,000 and
then 4,768 msgs/s, and it is never truncated while the service runs). So after each checkpoint
a second one runs while the store's write lock is held: it copies only what was committed during
the first, completes the log, and the next commit starts it over. The WAL then holds about one
interval of writes, and commits overwrite it in place rather than grow the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

log = logging.getLogger(__name__)

FINAL_CHECKPOINT_WAIT_MS = 2000
"""How long the checkpoint at close waits for readers (the log is kept if they stay)."""


class WalCheckpointer:
    """Checkpoints the WAL of one SQLite file every `interval` seconds on a worker thread."""

    def __init__(self, path: str, writers: asyncio.Lock, interval: float = 1.0) -> None:
        self.interval = interval
        self._writers = writers
        """Held by every write on the database; the completing checkpoint holds it too."""
        self._conn = sqlite3.connect(
            path, timeout=30, check_same_thread=False, isolation_level=None
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="wal-checkpoint")

    def checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]:
        """(busy, WAL pages, pages checkpointed), as SQLite reports them."""
        row = self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)
            try:
                await self.run_once()
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint failed: %s", exc)

    async def run_once(self) -> tuple[int, int, int]:
        """Checkpoint without blocking writers, then complete the log under the write lock so
        that the next commit starts it over; returns the second checkpoint's figures."""
        busy, _, _ = await asyncio.to_thread(self.checkpoint)
        if busy:
            return busy, 0, 0
        async with self._writers:
            return await asyncio.to_thread(self.checkpoint)

    async def close(self) -> None:
        """Stop, checkpoint everything once more (truncating the log), close the connection."""
        self._stop.set()
        if self._task is not None:
            await self._task
        try:
            # A reader still in a transaction (another process's) would make TRUNCATE wait for
            # the whole busy timeout: shutting down must not take 30 s for a smaller WAL file.
            self._conn.execute(f"PRAGMA busy_timeout={FINAL_CHECKPOINT_WAIT_MS}")
            busy, _, _ = await asyncio.to_thread(self.checkpoint, "TRUNCATE")
            if busy:
                log.info("final WAL checkpoint incomplete: a reader held the log; it is kept")
        except sqlite3.Error as exc:
            log.warning("final WAL checkpoint failed: %s", exc)
        self._conn.close()
