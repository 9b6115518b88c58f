"""The live stream ends for a revoked session even while changes keep it busy."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from taskflow.runtime.changes import ChangeFeed
from taskflow.web.stream import run_stream


class _Request:
    async def is_disconnected(self) -> bool:
        return False


class _Stream:
    async def changes(self, changed: Any) -> list[str]:
        return ["event: tasks\ndata: {}\n\n"]


async def test_a_revoked_session_ends_a_busy_stream_within_a_poll_interval() -> None:
    feed = ChangeFeed()
    waiter = feed.subscribe()
    checks: list[float] = []

    async def signed_in() -> bool:
        checks.append(time.monotonic())
        return False

    async def keep_busy() -> None:
        while True:  # a change every 50 ms: faster than the 0.3 s poll interval
            await asyncio.sleep(0.05)
            feed.notify(["some-task"])

    busy = asyncio.create_task(keep_busy())
    started = time.monotonic()
    events = run_stream(_Request(), _Stream(), waiter, "first", 0.3, signed_in)  # type: ignore[arg-type]
    received = [event async for event in events]
    busy.cancel()
    assert received[-1] == 'event: bye\ndata: {"reason":"signed-out"}\n\n'
    assert time.monotonic() - started < 1.0  # not the 20 s age limit
    assert len(checks) == 1
