"""runtime/transitions.py: the table of allowed moves, and the functions that make them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from taskflow.exceptions import InvalidTransitionError
from taskflow.models import TERMINAL_STATUSES, TaskRecord, TaskStatus
from taskflow.runtime import transitions
from taskflow.runtime.cancellation import CANCELLABLE
from taskflow.runtime.transitions import ALLOWED_MOVES, sources_of

PENDING, RUNNING = TaskStatus.PENDING, TaskStatus.RUNNING
SUCCESS, FAILED = TaskStatus.SUCCESS, TaskStatus.FAILED
INTERRUPTED, CANCELLED = TaskStatus.INTERRUPTED, TaskStatus.CANCELLED

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
EARLIER = NOW - timedelta(minutes=5)
LEASE = timedelta(seconds=20)
OLD_LEASE = EARLIER + LEASE


def record(status: TaskStatus) -> TaskRecord:
    """A held task in ``status``, every field a move may change set to something else."""
    return TaskRecord(
        task_id="task-1",
        func_name="job",
        status=status,
        created_at=EARLIER,
        start_time=EARLIER,
        end_time=EARLIER,
        duration_ms=1.0,
        error="earlier error",
        stacktrace="earlier trace",
        result="earlier result",
        executor="async",
        retries_used=1,
        max_retries=3,
        run_at=EARLIER,
        updated_at=EARLIER,
        owner="instance-a",
        lease_epoch=2,
        lease_expires_at=OLD_LEASE,
    )


@dataclass(frozen=True)
class Move:
    """One named function applied to a record; ``changes``: the fields it must set."""

    name: str
    apply: Callable[[TaskRecord], None]
    to: TaskStatus
    changes: dict[str, Any] = field(default_factory=dict)


CLOSED = {"end_time": NOW, "updated_at": NOW, "owner": None, "lease_expires_at": None}

MOVES = [
    Move(
        "start_attempt",
        lambda r: transitions.start_attempt(r, NOW, "thread", LEASE),
        RUNNING,
        {
            "start_time": NOW,
            "end_time": None,
            "duration_ms": None,
            "executor": "thread",
            "updated_at": NOW,
            "lease_expires_at": NOW + LEASE,
        },
    ),
    Move(
        "start_claimed", lambda r: transitions.start_claimed(r, NOW), RUNNING, {"start_time": NOW}
    ),
    Move("undo_start", transitions.undo_start, PENDING, {"start_time": None}),
    Move(
        "succeed",
        lambda r: transitions.succeed(r, NOW, 2.0, {"ok": True}),
        SUCCESS,
        {
            **CLOSED,
            "result": {"ok": True},
            "error": None,
            "stacktrace": None,
            "duration_ms": 2000.0,
        },
    ),
    Move(
        "fail", lambda r: transitions.fail(r, NOW, 2.0), FAILED, {**CLOSED, "duration_ms": 2000.0}
    ),
    Move(
        "cancel_attempt",
        lambda r: transitions.cancel_attempt(r, NOW, 2.0, "stopped"),
        CANCELLED,
        {**CLOSED, "error": "stopped", "duration_ms": 2000.0},
    ),
    Move(
        "schedule_retry",
        lambda r: transitions.schedule_retry(r, NOW, 10.0, 2.0, LEASE),
        PENDING,
        {
            "retries_used": 2,
            "run_at": NOW + timedelta(seconds=10),
            "end_time": NOW,
            "duration_ms": 2000.0,
            "updated_at": NOW,
            "lease_expires_at": NOW + timedelta(seconds=10) + LEASE,
        },
    ),
    *(
        Move(
            f"end_record({status.value})",
            lambda r, status=status: transitions.end_record(r, status, NOW, "why"),
            status,
            {**CLOSED, "error": "why"},
        )
        for status in (SUCCESS, FAILED, INTERRUPTED, CANCELLED)
    ),
    Move(
        "cancel", lambda r: transitions.cancel(r, NOW, "why"), CANCELLED, {**CLOSED, "error": "why"}
    ),
    Move(
        "interrupt",
        lambda r: transitions.interrupt(r, NOW, "why"),
        INTERRUPTED,
        {**CLOSED, "error": "why"},
    ),
    Move(
        "requeue_interrupted",
        lambda r: transitions.requeue_interrupted(r, NOW, "why"),
        PENDING,
        {"retries_used": 2, "run_at": NOW, "error": "why", "updated_at": NOW},
    ),
    Move(
        "release",
        lambda r: transitions.release(r, NOW),
        PENDING,
        {"owner": None, "lease_expires_at": None, "updated_at": NOW},
    ),
    Move("fence", transitions.fence, CANCELLED),
]

# Fields a move makes only from one status (release clears a running attempt's end).
FROM_RUNNING_ONLY = {"release": {"end_time": None}}


def allowed_cases() -> list[Any]:
    return [
        pytest.param(move, source, id=f"{move.name}:{source.value}")
        for move in MOVES
        for source in TaskStatus
        if move.to in ALLOWED_MOVES[source]
    ]


def refused_cases() -> list[Any]:
    return [
        pytest.param(move, source, id=f"{move.name}:{source.value}")
        for move in MOVES
        for source in TaskStatus
        if move.to not in ALLOWED_MOVES[source]
    ]


def test_the_table() -> None:
    assert dict(ALLOWED_MOVES) == {
        PENDING: {PENDING, RUNNING, FAILED, CANCELLED},
        RUNNING: {PENDING, SUCCESS, FAILED, INTERRUPTED, CANCELLED},
        SUCCESS: set(),
        FAILED: set(),
        INTERRUPTED: set(),
        CANCELLED: set(),
    }


def test_terminal_statuses_allow_nothing() -> None:
    for status in TaskStatus:
        assert (not ALLOWED_MOVES[status]) is (status in TERMINAL_STATUSES)


def test_every_allowed_move_has_a_function() -> None:
    made = {
        (source, move.to)
        for move in MOVES
        for source in TaskStatus
        if move.to in ALLOWED_MOVES[source]
    }
    assert made == {(source, to) for source, targets in ALLOWED_MOVES.items() for to in targets}


@pytest.mark.parametrize(("move", "source"), allowed_cases())
def test_an_allowed_move_sets_its_fields_and_nothing_else(move: Move, source: TaskStatus) -> None:
    task = record(source)
    expected = record(source)
    expected.status = move.to
    changes = dict(move.changes)
    if source is RUNNING:
        changes.update(FROM_RUNNING_ONLY.get(move.name, {}))
    for name, value in changes.items():
        setattr(expected, name, value)
    move.apply(task)
    assert task == expected


@pytest.mark.parametrize(("move", "source"), refused_cases())
def test_a_forbidden_move_raises_and_changes_nothing(move: Move, source: TaskStatus) -> None:
    task = record(source)
    with pytest.raises(InvalidTransitionError) as raised:
        move.apply(task)
    message = str(raised.value)
    assert f"from {source.value} to {move.to.value}" in message
    assert task == record(source)


@pytest.mark.parametrize("source", sorted(TERMINAL_STATUSES, key=list(TaskStatus).index))
def test_a_terminal_task_moves_nowhere(source: TaskStatus) -> None:
    for move in MOVES:
        task = record(source)
        with pytest.raises(InvalidTransitionError, match=f"{source.value} is terminal"):
            move.apply(task)
        assert task == record(source)


def test_end_record_only_ends() -> None:
    # running -> pending is in the table, but it is not an end: no end time for it.
    task = record(RUNNING)
    with pytest.raises(InvalidTransitionError, match="from running to pending: that is not an end"):
        transitions.end_record(task, PENDING, NOW, "why")
    assert task == record(RUNNING)


def test_the_error_says_where_the_task_may_go() -> None:
    with pytest.raises(InvalidTransitionError) as raised:
        transitions.interrupt(record(PENDING), NOW, "why")
    assert str(raised.value) == (
        "task task-1 cannot move from pending to interrupted: "
        "it may only move to pending, running, failed, cancelled"
    )


def test_expected_statuses_come_from_the_table() -> None:
    assert sources_of(CANCELLED) == (PENDING, RUNNING)
    assert sources_of(RUNNING) == (PENDING,)
    assert sources_of(SUCCESS) == (RUNNING,)
    assert sources_of(CANCELLED) == CANCELLABLE
