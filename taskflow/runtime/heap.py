"""Taking a started app's objects out of the cyclic garbage collector's reach (opt-in).

A served FastAPI app holds well over 100,000 objects the collector tracks
once it has started (FastAPI, pydantic, SQLAlchemy, Alembic and the app's
own modules).  A response that waits for its task's commit keeps its
request's objects alive across collections, so they are promoted, and full
collections come every few seconds under load.  Each one walks that whole
start-up heap with the event loop stopped (tens of milliseconds), and with
16 requests in flight every pause lands in the tail of the latencies.
``gc.freeze()`` moves everything alive now into a generation that
collections skip; objects created later are collected as usual.

It changes the process, not just taskflow, so it is the application's
choice (``TaskManager(freeze_gc_at_startup=True)``).  The collection first
frees the start-up's own garbage, which would otherwise never be freed.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger("taskflow.heap")


def freeze_startup_heap() -> int:
    """Collect, then freeze every object alive now; returns how many are frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("taskflow froze %d start-up objects out of the garbage collector's reach", frozen)
    return frozen
