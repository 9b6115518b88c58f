"""Schedules: sync keeps what other instances set; each slot fires exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta

from taskflow.models import TaskRecord, TaskSource, TaskStatus
from taskflow.repository.base import TaskQuery, TaskRepository
from taskflow.schedules import FireOutcome, ScheduleDefinition
from tests.conformance.records import at, make_record

EVERY_MINUTE = ScheduleDefinition(
    name="beat", trigger="every 60s", every_seconds=60.0, cron=None, timezone="UTC"
)
HOURLY = ScheduleDefinition(
    name="beat", trigger="cron 0 * * * *", every_seconds=None, cron="0 * * * *", timezone="UTC"
)
SLOT = at(600)
NEXT = SLOT + timedelta(minutes=1)


def slot_task(n: int, slot: datetime = SLOT) -> TaskRecord:
    """The task a firing of ``slot`` inserts."""
    return make_record(
        n,
        func_name="beat",
        source=TaskSource.SCHEDULED.value,
        schedule_name="beat",
        scheduled_for=slot,
    )


async def test_sync_creates_the_schedule(backend: TaskRepository) -> None:
    state = await backend.sync_schedule(EVERY_MINUTE, first_run_at=SLOT, now=at(1))
    assert (state.name, state.every_seconds, state.cron) == ("beat", 60.0, None)
    assert (state.next_run_at, state.last_run_at, state.paused) == (SLOT, None, False)
    assert await backend.get_schedule("beat") == state
    assert await backend.list_schedules() == [state]
    assert await backend.get_schedule("nope") is None


async def test_sync_keeps_the_next_run_of_an_unchanged_trigger(backend: TaskRepository) -> None:
    await backend.sync_schedule(EVERY_MINUTE, first_run_at=SLOT, now=at(1))
    again = await backend.sync_schedule(EVERY_MINUTE, first_run_at=at(900), now=at(2))
    assert again.next_run_at == SLOT


async def test_sync_of_a_changed_trigger_takes_the_new_first_run(backend: TaskRepository) -> None:
    await backend.sync_schedule(EVERY_MINUTE, first_run_at=SLOT, now=at(1))
    await backend.set_schedule_paused("beat", True, resume_at=None, now=at(2))
    changed = await backend.sync_schedule(HOURLY, first_run_at=at(3600), now=at(3))
    assert (changed.cron, changed.every_seconds, changed.next_run_at) == (
        "0 * * * *",
        None,
        at(3600),
    )
    assert changed.paused  # paused by someone: a new trigger does not resume it


async def test_run_now_unless_fired_since(backend: TaskRepository) -> None:
    await backend.sync_schedule(EVERY_MINUTE, first_run_at=SLOT, now=at(1))
    brought_forward = await backend.sync_schedule(
        EVERY_MINUTE, first_run_at=SLOT, now=at(10), run_now_unless_fired_since=at(0)
    )
    assert brought_forward.next_run_at == at(10)
    fire = {"slot": at(10), "next_run_at": at(70), "now": at(10)}
    assert await backend.fire_schedule("beat", record=slot_task(1, at(10)), **fire) == (
        FireOutcome.FIRED
    )
    kept = await backend.sync_schedule(
        EVERY_MINUTE, first_run_at=SLOT, now=at(20), run_now_unless_fired_since=at(5)
    )
    assert kept.next_run_at == at(70)  # it fired since then


async def test_fire_moves_the_slot_and_inserts_the_task(backend: TaskRepository) -> None:
    await backend.sync_schedule(EVERY_MINUTE, first_run_at=SLOT, now=at(1))
    record = slot_task(1)
    outcome = await backend.fire_schedule(
        "beat", slot=SLOT, next_run_at=NEXT, record=record, now=SLOT
    )
    assert outcome is FireOutcome.FIRED
    state = await backend.get_schedule("beat")
    assert state is not None
    assert (state.next_run_at, state.last_run_at, state.last_task_id) == (
        NEXT,
        SLOT,
        record.task_id,
    )
    assert state.last_status == TaskStatus.PENDING.value
    stored = await backend.get_task(record.task_id, with_logs=False)
    assert stored is not None and (stored.schedule_name, stored.scheduled_for) == ("beat", SLOT)


async def test_a_slot_that_already_moved_is_lost(backend: TaskRepository) -> None:
    await backend.sync_schedule(EVERY_MINUTE, first_run_at=SLOT, now=at(1))
    await backend.fire_schedule("beat", slot=SLOT, next_run_at=NEXT, record=slot_task(1), now=SLOT)
    late = slot_task(2)
    outcome = await backend.fire_schedule(
        "beat", slot=SLOT, next_run_at=NEXT, record=late, now=SLOT
    )
    assert outcome is FireOutcome.LOST
    assert await backend.get_task(late.task_id) is None


async def test_a_paused_schedule_does_not_fire(backend: TaskRepository) -> None:
    await backend.sync_schedule(EVERY_MINUTE, first_run_at=SLOT, now=at(1))
    paused = await backend.set_schedule_paused("beat", True, resume_at=None, now=at(2))
    assert paused is not None and paused.paused
    record = slot_task(1)
    outcome = await backend.fire_schedule(
        "beat", slot=SLOT, next_run_at=NEXT, record=record, now=SLOT
    )
    assert outcome is FireOutcome.LOST
    assert await backend.get_task(record.task_id) is None


async def test_resume_moves_a_passed_next_run(backend: TaskRepository) -> None:
    await backend.sync_schedule(EVERY_MINUTE, first_run_at=SLOT, now=at(1))
    await backend.set_schedule_paused("beat", True, resume_at=None, now=at(2))
    resumed = await backend.set_schedule_paused("beat", False, resume_at=at(2000), now=at(1900))
    assert resumed is not None and not resumed.paused
    assert resumed.next_run_at == at(2000)
    assert await backend.set_schedule_paused("nope", True, resume_at=None, now=at(2)) is None


async def test_a_rewound_slot_cannot_fire_a_second_task(backend: TaskRepository) -> None:
    await backend.sync_schedule(EVERY_MINUTE, first_run_at=SLOT, now=at(1))
    first = slot_task(1)
    await backend.fire_schedule("beat", slot=SLOT, next_run_at=NEXT, record=first, now=SLOT)
    # A trigger change brings next_run_at back to the slot that already fired.
    await backend.sync_schedule(HOURLY, first_run_at=SLOT, now=at(2))
    again = slot_task(2)
    outcome = await backend.fire_schedule(
        "beat", slot=SLOT, next_run_at=NEXT, record=again, now=SLOT
    )
    assert outcome is FireOutcome.DUPLICATE
    tasks = await backend.list_tasks(TaskQuery(source=TaskSource.SCHEDULED.value))
    assert [t.task_id for t in tasks.items] == [first.task_id]


async def test_racing_fires_of_one_slot_have_one_winner(
    pair: tuple[TaskRepository, TaskRepository],
) -> None:
    first, second = pair
    await first.sync_schedule(EVERY_MINUTE, first_run_at=SLOT, now=at(1))
    outcomes = await asyncio.gather(
        *(
            (first if n % 2 else second).fire_schedule(
                "beat", slot=SLOT, next_run_at=NEXT, record=slot_task(n), now=SLOT
            )
            for n in range(1, 7)
        )
    )
    assert Counter(outcomes) == Counter({FireOutcome.FIRED: 1, FireOutcome.LOST: 5})
    tasks = await first.list_tasks(TaskQuery(source=TaskSource.SCHEDULED.value))
    assert len(tasks.items) == 1
    state = await first.get_schedule("beat")
    assert state is not None and state.last_task_id == tasks.items[0].task_id
