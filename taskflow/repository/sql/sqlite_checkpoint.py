"""WAL checkpoints for the inline SQLite writer, run in a worker thread.

By default SQLite checkpoints inside the COMMIT that takes the log past 1,000
pages: the committing connection copies the logged pages into the database
file and fsyncs it.  For the inline writer that connection is on the event
loop, so every so often one request waited for a checkpoint; measured on a
2-core VM it came to about 10 µs per task (``benchmarks/`` has the numbers).
The inline connection therefore raises the automatic threshold tenfold, and
this class runs a ``PASSIVE`` checkpoint from a worker thread every so many
commits.  The checkpoint is one SQLite call, so the thread holds the GIL only
to start and to finish; it never takes the write lock, so it never delays a
commit either.

A passive checkpoint copies the log up to where it was when it started; the
log starts over from the beginning only when a commit finds all of it
copied.  Commits that come back to back with no gap at all (a burst of
``enqueue()`` calls) can keep that from happening, and then SQLite's own
checkpoint, at ten times its usual size, bounds the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import sqlite3
from concurrent.futures import Future

logger = logging.getLogger("taskflow.sqlite")

# About 1,000 pages of log at the writer's typical 15 pages per commit: the
# log stays near the size SQLite's own automatic checkpoint would allow.
COMMITS_PER_CHECKPOINT = 64
# SQLite's default is 1,000 pages; the backstop checkpoint copies only what
# the background ones have not copied yet.
BACKSTOP_CHECKPOINT_PAGES = 10_000


class BackgroundCheckpoints:
    """Counts the inline writer's commits and checkpoints in a thread now and then."""

    def __init__(self, path: str, every: int = COMMITS_PER_CHECKPOINT) -> None:
        # Absolute, so a later chdir cannot point it at another file; read-write
        # without create, so a deleted database is not recreated empty.
        absolute = pathlib.Path(os.path.abspath(path)).as_uri()
        self._uri = f"{absolute}?mode=rw"
        self._path = path
        self._every = every
        self._commits = 0
        self._running: asyncio.Future[None] | Future[None] | None = None

    def after_commit(self) -> None:
        """Note one commit; start a checkpoint when enough have accumulated (loop thread)."""
        self._commits += 1
        if self._commits < self._every:
            return
        if self._running is not None and not self._running.done():
            return  # the last one is still copying: count on, try at the next commit
        self._commits = 0
        self._running = asyncio.get_running_loop().run_in_executor(None, self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            conn = sqlite3.connect(self._uri, isolation_level=None, uri=True)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                conn.close()
        except sqlite3.Error as exc:  # the next one retries; the log only grows meanwhile
            logger.warning("taskflow: WAL checkpoint of %s failed: %s", self._path, exc)
