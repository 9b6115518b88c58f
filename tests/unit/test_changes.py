"""``ChangeFeed``: coalesced wake-ups for live dashboard streams."""

from __future__ import annotations

import asyncio
import gc

from taskflow.runtime.changes import MAX_TRACKED_IDS, ChangeFeed


async def test_a_burst_of_notifications_wakes_once_with_every_id() -> None:
    feed = ChangeFeed()
    waiter = feed.subscribe()
    assert feed.listening
    feed.notify(["a"])
    feed.notify({"b", "c"})
    assert await waiter.wait(timeout=0.1)
    assert waiter.take() == {"a", "b", "c"}
    assert not await waiter.wait(timeout=0.01)  # taken: nothing new


async def test_unnamed_changes_and_overflow_mean_everything() -> None:
    feed = ChangeFeed()
    waiter = feed.subscribe()
    feed.notify(["a"])
    feed.notify(None)
    assert waiter.take() is None
    feed.notify(str(i) for i in range(MAX_TRACKED_IDS + 1))
    assert waiter.take() is None


async def test_nobody_listening_costs_nothing_and_waiters_go_away() -> None:
    feed = ChangeFeed()
    feed.notify(["a"])  # no listener: nothing happens
    waiter = feed.subscribe()
    waiter.unsubscribe()
    assert not feed.listening
    forgotten = feed.subscribe()
    del forgotten
    gc.collect()
    assert not feed.listening  # a stream that never started leaks nothing


async def test_close_ends_every_listener_and_open_accepts_again() -> None:
    feed = ChangeFeed()
    waiter = feed.subscribe()
    pending = asyncio.ensure_future(waiter.wait(timeout=5))
    await asyncio.sleep(0)
    feed.close()
    assert await pending and waiter.closed
    assert feed.subscribe().closed
    feed.open()
    assert not feed.subscribe().closed
