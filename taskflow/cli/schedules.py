"""``taskflow schedules list|pause|resume|run-now``: the schedules every instance shares.

A schedule's state (next run, paused) is a row the running app instances
read every few seconds, so changing it here changes it for all of them; no
app needs to be imported.  ``pause`` and ``resume`` make the admin API's
``set_schedule_paused`` call; ``run-now`` brings the next run forward to now
through ``sync_schedule``, as ``run_on_startup`` does, and a running
instance that registers the schedule fires it within its refresh interval
(about two seconds).  Nothing fires while no instance runs.  Each change is
audited with the OS user.
"""

from __future__ import annotations

import argparse
from datetime import datetime

from taskflow.cli import audited
from taskflow.cli.output import print_json, table, when
from taskflow.cli.parser import EXIT_OK, Commands, add_json_option, add_url_option
from taskflow.exceptions import InvalidTransitionError, TaskflowError
from taskflow.models import utcnow
from taskflow.repository.base import TaskRepository
from taskflow.schedules import (
    ScheduleDefinition,
    ScheduleNotFoundError,
    ScheduleState,
    make_trigger,
)

HEADERS = ("NAME", "TRIGGER", "NEXT RUN (UTC)", "LAST RUN (UTC)", "LAST STATUS", "STATE")


async def _find(repository: TaskRepository, name: str) -> ScheduleState:
    state = await repository.get_schedule(name)
    if state is None:
        raise ScheduleNotFoundError(
            f"no schedule named {name!r}: `taskflow schedules list` lists them"
        )
    return state


def _print_state(args: argparse.Namespace, state: ScheduleState, message: str) -> None:
    if args.json:
        print_json(state.to_dict())
    else:
        print(message)


async def _list(args: argparse.Namespace, repository: TaskRepository) -> int:
    states = await repository.list_schedules()
    if args.json:
        print_json([state.to_dict() for state in states])
        return EXIT_OK
    if not states:
        print("no schedules (an app registers them with @task_manager.schedule when it starts)")
        return EXIT_OK
    rows = [
        (
            s.name,
            s.trigger,
            "-" if s.paused else when(s.next_run_at),
            when(s.last_run_at),
            s.last_status or "-",
            "paused" if s.paused else "active",
        )
        for s in states
    ]
    print(table(HEADERS, rows))
    return EXIT_OK


def _next_after(state: ScheduleState, now: datetime) -> datetime | None:
    """The trigger's next slot after ``now``, as the instances compute it; None if unknown here."""
    try:
        trigger = make_trigger(every=state.every_seconds, cron=state.cron, timezone=state.timezone)
    except TaskflowError:  # croniter not installed here, or a trigger this version cannot read
        return None
    return trigger.next_after(now)


async def _pause(args: argparse.Namespace, repository: TaskRepository) -> int:
    await _find(repository, args.name)
    state = await repository.set_schedule_paused(args.name, True, resume_at=None, now=utcnow())
    if state is None:
        raise ScheduleNotFoundError(f"schedule {args.name!r} was deleted meanwhile")
    await audited.record(repository, "schedule_pause", detail={"schedule": args.name})
    _print_state(args, state, f"paused {state.name}: no instance fires it until it is resumed")
    return EXIT_OK


async def _resume(args: argparse.Namespace, repository: TaskRepository) -> int:
    found = await _find(repository, args.name)
    now = utcnow()
    # Runs missed while paused are skipped, as the admin API does: from the next slot.
    state = await repository.set_schedule_paused(
        args.name, False, resume_at=_next_after(found, now), now=now
    )
    if state is None:
        raise ScheduleNotFoundError(f"schedule {args.name!r} was deleted meanwhile")
    await audited.record(repository, "schedule_resume", detail={"schedule": args.name})
    _print_state(args, state, f"resumed {state.name}: next run {when(state.next_run_at)} UTC")
    return EXIT_OK


async def _run_now(args: argparse.Namespace, repository: TaskRepository) -> int:
    found = await _find(repository, args.name)
    if found.paused:
        raise InvalidTransitionError(
            f"schedule {args.name!r} is paused: `taskflow schedules resume {args.name}` first"
        )
    now = utcnow()
    definition = ScheduleDefinition(
        found.name, found.trigger, found.every_seconds, found.cron, found.timezone
    )
    # The stored trigger unchanged: only next_run_at moves, to now (run_on_startup's rule).
    state = await repository.sync_schedule(
        definition, first_run_at=now, now=now, run_now_unless_fired_since=now
    )
    await audited.record(repository, "schedule_run_now", detail={"schedule": args.name})
    due = state.next_run_at is not None and state.next_run_at <= now
    if not due:
        raise TaskflowError(f"schedule {args.name!r} could not be brought forward; try again")
    _print_state(
        args, state, f"{state.name} is due now: a running app instance fires it within seconds"
    )
    return EXIT_OK


def add_schedule_commands(commands: Commands) -> None:
    """``taskflow schedules ...``."""
    schedules = commands.add_parser(
        "schedules",
        help="list, pause, resume or fire schedules",
        description="The schedules every app instance shares: a change here applies to all of "
        "them, and is recorded in the audit log with your OS user name.",
    )
    actions = schedules.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="every schedule with its next and last run")
    listing.set_defaults(store_handler=_list)

    pause = actions.add_parser("pause", help="stop firing a schedule on every instance (audited)")
    pause.set_defaults(store_handler=_pause)

    resume = actions.add_parser(
        "resume", help="fire it again from its next slot; missed runs are skipped (audited)"
    )
    resume.set_defaults(store_handler=_resume)

    run_now = actions.add_parser(
        "run-now",
        help="make its next run due now, for a running instance to fire (audited)",
        description="Bring the schedule's next run forward to now. A running app instance "
        "that registers the schedule fires it within its refresh interval (about two "
        "seconds) and computes the following run from there; nothing fires while no "
        "instance runs. A paused schedule must be resumed first.",
    )
    run_now.set_defaults(store_handler=_run_now)

    for action in (pause, resume, run_now):
        action.add_argument("name", metavar="NAME")
    for action in (listing, pause, resume, run_now):
        add_json_option(action)
        add_url_option(action)
