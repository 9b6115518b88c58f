"""``taskflow tasks list|show|cancel`` (``retry`` and ``retry-failed``: ``taskflow.cli.retries``).

Reads go through ``TaskRepository.list_tasks`` / ``get_task``, the calls the
dashboard makes, so they see every instance's tasks on any backend.  Lists
are read a keyset page at a time, newest first, and stop at ``--limit``.
"""

from __future__ import annotations

import argparse
from typing import Any

from taskflow.cli import audited
from taskflow.cli.output import clip, fields, print_json, seconds, table, when
from taskflow.cli.parser import EXIT_OK, Commands, add_json_option, add_url_option
from taskflow.cli.reads import find_task, read_tasks
from taskflow.cli.retries import add_retry_commands
from taskflow.cli.since import FORMS, positive_int, since_argument
from taskflow.models import TaskLogEntry, TaskRecord, TaskStatus
from taskflow.repository.base import TaskQuery, TaskRepository
from taskflow.runtime.cancellation import cancel_task

DEFAULT_LIMIT = 20
ERROR_WIDTH = 48
STATUSES = [status.value for status in TaskStatus]
LIST_HEADERS = ("ID", "FUNCTION", "STATUS", "CREATED (UTC)", "DURATION", "TRIES", "ERROR")


def _tries(record: TaskRecord) -> str:
    return f"{record.retries_used + 1}/{record.max_retries + 1}"


async def _list(args: argparse.Namespace, repository: TaskRepository) -> int:
    statuses = [TaskStatus(value) for value in args.status] if args.status else None
    query = TaskQuery(status=statuses, func_name=args.func, created_since=args.since)
    records, more = await read_tasks(repository, query, args.limit)
    if args.json:
        print_json([record.to_dict(include_logs=False) for record in records])
        return EXIT_OK
    if not records:
        print("no tasks match")
        return EXIT_OK
    rows = [
        (
            r.task_id,
            r.func_name,
            r.status.value,
            when(r.created_at),
            seconds(r.duration),
            _tries(r),
            clip(r.error, ERROR_WIDTH),
        )
        for r in records
    ]
    print(table(LIST_HEADERS, rows))
    if more:
        print(f"\nshowing the newest {len(records)}; more match (raise --limit to see them)")
    return EXIT_OK


def _log_dict(entry: TaskLogEntry) -> dict[str, Any]:
    return {
        "attempt": entry.attempt,
        "level": entry.level,
        "message": entry.message,
        "created_at": entry.created_at.isoformat(),
        "extra": entry.extra,
    }


def _show_fields(record: TaskRecord) -> list[tuple[str, str]]:
    tags = ", ".join(f"{key}={value}" for key, value in sorted(record.tags.items()))
    pairs = [
        ("ID", record.task_id),
        ("Function", record.func_name),
        ("Status", record.status.value),
        ("Source", record.source),
        ("Created", when(record.created_at)),
        ("Started", when(record.start_time)),
        ("Ended", when(record.end_time)),
        ("Duration", seconds(record.duration)),
        ("Attempts", _tries(record)),
        ("Executor", record.executor or "-"),
        ("Priority", "-" if record.priority is None else str(record.priority)),
        ("Tags", tags or "-"),
    ]
    if record.retried_from:
        pairs.append(("Retry of", record.retried_from))
    if record.schedule_name:
        pairs.append(("Schedule", f"{record.schedule_name} ({when(record.scheduled_for)})"))
    if record.idempotency_key:
        pairs.append(("Idempotency key", record.idempotency_key))
    return pairs


async def _show(args: argparse.Namespace, repository: TaskRepository) -> int:
    record = await find_task(repository, args.task_id)
    logs = await repository.get_logs(args.task_id)
    if args.json:
        print_json({**record.to_dict(include_logs=False), "logs": [_log_dict(e) for e in logs]})
        return EXIT_OK
    print(fields(_show_fields(record)))
    if logs:
        print("\nLogs:")
        for entry in logs:
            print(
                f"  {when(entry.created_at)}  #{entry.attempt}  {entry.level:<7}  {entry.message}"
            )
    if record.error:
        print(f"\nError:\n  {record.error.strip()}")
    if record.stacktrace:
        print("\nStack trace:")
        print("\n".join(f"  {line}" for line in record.stacktrace.rstrip().splitlines()))
    return EXIT_OK


async def _cancel(args: argparse.Namespace, repository: TaskRepository) -> int:
    before = await find_task(repository, args.task_id)
    # No task of this process: the row is cancelled in the store, which fences out
    # whichever instance holds it, as the admin API does for another instance's task.
    await cancel_task(args.task_id, held={}, repository=repository, writer=None, runner=None)
    await audited.record(repository, "cancel", task_id=args.task_id)
    record = await find_task(repository, args.task_id)
    if args.json:
        print_json(record.to_dict(include_logs=False))
    else:
        print(f"cancelled {record.task_id} ({before.func_name}, was {before.status.value})")
    return EXIT_OK


def add_task_commands(commands: Commands) -> None:
    """``taskflow tasks ...``."""
    tasks = commands.add_parser(
        "tasks",
        help="list, inspect, retry and cancel tasks",
        description="Read every instance's tasks from the store; retry and cancel as the "
        "admin API does, recorded in the audit log with your OS user name.",
    )
    actions = tasks.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list", help="tasks newest first", description="Tasks newest first, read a page at a time."
    )
    listing.add_argument(
        "--status",
        action="append",
        choices=STATUSES,
        metavar="STATUS",
        help=f"only tasks in this status (repeatable): {', '.join(STATUSES)}",
    )
    listing.add_argument("--func", metavar="NAME", help="only tasks of this function")
    listing.add_argument(
        "--since", type=since_argument, metavar="WHEN", help=f"only tasks created since: {FORMS}"
    )
    listing.add_argument(
        "--limit",
        type=positive_int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N tasks (default: {DEFAULT_LIMIT})",
    )
    listing.set_defaults(store_handler=_list)

    show = actions.add_parser("show", help="one task: fields, logs, error and stack trace")
    show.add_argument("task_id", metavar="ID")
    show.set_defaults(store_handler=_show)

    cancel = actions.add_parser(
        "cancel",
        help="cancel a pending or running task (audited)",
        description="Cancel a pending or running task on whichever instance holds it. "
        "Recorded in the audit log with your OS user name.",
    )
    cancel.add_argument("task_id", metavar="ID")
    cancel.set_defaults(store_handler=_cancel)

    extra = add_retry_commands(actions)
    for action in (listing, show, cancel, *extra):
        add_json_option(action)
        add_url_option(action)
