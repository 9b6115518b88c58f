"""``Slots``: the local priority queue in front of each executor (no I/O)."""

from __future__ import annotations

import asyncio

from taskflow.runtime.priority import Slots, dispatch_path


async def test_free_slots_are_taken_at_once_and_unlimited_never_waits() -> None:
    unlimited = Slots(None)
    assert all(unlimited.try_acquire() for _ in range(1000))
    two = Slots(2)
    assert two.try_acquire() and two.try_acquire()
    assert not two.try_acquire()
    two.release()
    assert two.try_acquire()


async def test_waiters_get_slots_by_priority_then_arrival_with_unset_last() -> None:
    slots = Slots(1)
    assert slots.try_acquire()
    order: list[str] = []

    async def waiter(label: str, priority: int | None) -> None:
        await slots.acquire(priority)
        order.append(label)
        slots.release()

    tasks = [
        asyncio.create_task(waiter(label, priority))
        for label, priority in [
            ("unset", None),
            ("low", 1),
            ("high-1", 9),
            ("negative", -5),
            ("high-2", 9),
            ("zero", 0),
        ]
    ]
    await asyncio.sleep(0)
    assert slots.waiting == 6 and order == []
    slots.release()
    await asyncio.gather(*tasks)
    assert order == ["high-1", "high-2", "low", "zero", "negative", "unset"]
    assert slots.try_acquire()  # every slot came back


async def test_a_cancelled_waiter_passes_its_slot_on() -> None:
    slots = Slots(1)
    assert slots.try_acquire()
    first = asyncio.create_task(slots.acquire(5))
    second = asyncio.create_task(slots.acquire(1))
    await asyncio.sleep(0)
    slots.release()  # handed to `first`...
    first.cancel()  # ...which is cancelled before it resumes
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1)  # the slot went on to the next waiter
    assert not slots.try_acquire()
    slots.release()
    assert slots.try_acquire()


def test_dispatch_path_rules() -> None:
    assert dispatch_path(None, False, "async") == "after_response"
    assert dispatch_path(None, True, "thread") == "now"
    assert dispatch_path(3, False, "async") == "now"  # a priority queues at once
    assert dispatch_path(3, True, "process") == "now"  # eager ignored, no fallback
    assert dispatch_path(None, True, "process") == "after_response"  # eager + process
