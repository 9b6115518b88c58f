"""``taskflow report``: counts, failures, durations and throughput of a time window.

The metrics roll-up (``TaskRepository.metrics()``) covers every task ever
finished and has no time dimension, so a window is read from the tasks
themselves: ``list_tasks`` with ``created_since``, a keyset page at a time,
at most ``MAX_REPORT_TASKS`` of them (the newest; the report says when it
stopped there).  The same reads work on every backend, so the numbers agree
whichever store holds the tasks.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from taskflow.cli.output import Progress, percent, print_json, seconds, table, when
from taskflow.cli.parser import EXIT_OK, Commands, UsageError, add_url_option
from taskflow.cli.reads import pages
from taskflow.cli.since import FORMS, since_argument
from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.repository.base import TaskQuery, TaskRepository

MAX_REPORT_TASKS = 100_000
DEFAULT_SINCE = "24h"
FAILURES = frozenset({TaskStatus.FAILED, TaskStatus.INTERRUPTED})
HOUR = timedelta(hours=1)
NO_TAG = "(none)"
COLUMNS = (
    "tasks",
    "succeeded",
    "failed",
    "cancelled",
    "active",
    "failure_rate",
    "p50_seconds",
    "p95_seconds",
    "per_hour",
)


def percentile(ordered: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of an ascending list; None when it is empty."""
    if not ordered:
        return None
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


@dataclass
class Group:
    """What the report counts for one function, hour or tag value."""

    name: str
    hours: float
    tasks: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    durations: list[float] = field(default_factory=list)

    def add(self, record: TaskRecord) -> None:
        self.tasks += 1
        if record.status is TaskStatus.SUCCESS:
            self.succeeded += 1
        elif record.status in FAILURES:
            self.failed += 1
        elif record.status is TaskStatus.CANCELLED:
            self.cancelled += 1
        duration = record.duration
        if duration is not None and record.status not in (TaskStatus.PENDING, TaskStatus.RUNNING):
            self.durations.append(duration)

    def to_dict(self) -> dict[str, Any]:
        """The group's numbers; failure rate over tasks that succeeded or failed."""
        outcomes = self.succeeded + self.failed
        finished = outcomes + self.cancelled
        ordered = sorted(self.durations)
        return {
            "group": self.name,
            "tasks": self.tasks,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "active": self.tasks - finished,
            "failure_rate": round(self.failed / outcomes, 6) if outcomes else None,
            "p50_seconds": percentile(ordered, 0.50),
            "p95_seconds": percentile(ordered, 0.95),
            "per_hour": round(finished / self.hours, 3) if self.hours > 0 else None,
        }


class Grouping:
    """Sorts each task into its group: by function, by hour created, or by one tag's value."""

    def __init__(self, by: str, since: datetime, until: datetime) -> None:
        self.by, self.since, self.until = by, since, until
        self.tag = by.partition(":")[2] if by.startswith("tag:") else None
        self.groups: dict[str, Group] = {}
        self.total = Group("(all)", _hours(since, until))

    def add(self, record: TaskRecord) -> None:
        self.total.add(record)
        key, hours = self._key(record)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(key, hours)
        group.add(record)

    def _key(self, record: TaskRecord) -> tuple[str, float]:
        if self.by == "hour":
            start = record.created_at.replace(minute=0, second=0, microsecond=0)
            hours = _hours(max(start, self.since), min(start + HOUR, self.until))
            return when(start)[:-3], hours
        if self.tag is not None:
            return record.tags.get(self.tag, NO_TAG), self.total.hours
        return record.func_name, self.total.hours

    def rows(self) -> list[dict[str, Any]]:
        ordered = sorted(self.groups)  # hours in time order, names alphabetically
        return [self.groups[name].to_dict() for name in ordered]


def _hours(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0) / 3600


def group_argument(text: str) -> str:
    """An argparse ``type=`` for ``--by``: ``func``, ``hour`` or ``tag:KEY``."""
    if text in ("func", "hour") or (text.startswith("tag:") and len(text) > 4):
        return text
    raise argparse.ArgumentTypeError(f"expected func, hour or tag:KEY, got {text!r}")


def _print_table(grouping: Grouping, read: int, complete: bool) -> None:
    heading = {"func": "FUNCTION", "hour": "HOUR (UTC)"}.get(grouping.by, f"TAG {grouping.tag}")
    headers = (heading, "TASKS", "OK", "FAILED", "FAIL RATE", "P50", "P95", "PER HOUR")
    rows = [
        (
            str(row["group"]),
            str(row["tasks"]),
            str(row["succeeded"]),
            str(row["failed"]),
            percent(row["failure_rate"]),
            seconds(row["p50_seconds"]),
            seconds(row["p95_seconds"]),
            "-" if row["per_hour"] is None else f"{row['per_hour']:g}",
        )
        for row in [*grouping.rows(), grouping.total.to_dict()]
    ]
    print(f"tasks created {when(grouping.since)} to {when(grouping.until)} UTC: {read} read")
    if not grouping.groups:
        print("no tasks in this window")
        return
    print(table(headers, rows))
    if not complete:
        print(f"\nstopped at the newest {MAX_REPORT_TASKS} tasks: narrow --since for a full count")


def _print_csv(grouping: Grouping) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow((grouping.by, *COLUMNS))
    for row in [*grouping.rows(), grouping.total.to_dict()]:
        writer.writerow((row["group"], *("" if row[c] is None else row[c] for c in COLUMNS)))


async def _report(args: argparse.Namespace, repository: TaskRepository) -> int:
    until = utcnow()
    if args.since >= until:
        raise UsageError(f"--since {when(args.since)} is not in the past")
    grouping = Grouping(args.by, args.since, until)
    query = TaskQuery(created_since=args.since, created_until=until)
    read = 0
    progress = Progress("tasks read", sys.stderr)
    try:
        async for page in pages(repository, query, MAX_REPORT_TASKS + 1):
            for record in page[: MAX_REPORT_TASKS - read]:
                grouping.add(record)
            read += len(page)
            progress.update(min(read, MAX_REPORT_TASKS))
    finally:
        progress.finish()
    complete = read <= MAX_REPORT_TASKS
    read = min(read, MAX_REPORT_TASKS)
    if args.json:
        print_json(
            {
                "since": args.since.isoformat(),
                "until": until.isoformat(),
                "by": args.by,
                "tasks_read": read,
                "complete": complete,
                "groups": grouping.rows(),
                "total": grouping.total.to_dict(),
            }
        )
    elif args.csv:
        _print_csv(grouping)
    else:
        _print_table(grouping, read, complete)
    return EXIT_OK


def add_report_command(commands: Commands) -> None:
    """``taskflow report``."""
    report = commands.add_parser(
        "report",
        help="counts, failure rate, p50/p95 duration and throughput of a time window",
        description=(
            "Counts, failures, failure rate (failed and interrupted over finished-with-an-"
            "outcome), p50/p95 duration and throughput (finished tasks per hour) of the "
            "tasks created in the window. It reads the tasks themselves, newest first, "
            f"and stops at {MAX_REPORT_TASKS:,} of them (it says so): narrow --since on "
            "busy stores. The dashboard's all-time metrics come from the roll-up instead."
        ),
    )
    report.add_argument(
        "--since",
        type=since_argument,
        default=DEFAULT_SINCE,
        metavar="WHEN",
        help=f"tasks created since: {FORMS} (default: {DEFAULT_SINCE})",
    )
    report.add_argument(
        "--by",
        type=group_argument,
        default="func",
        metavar="func|hour|tag:KEY",
        help="one row per function (default), per hour created, or per value of tag KEY",
    )
    formats = report.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    formats.add_argument("--csv", action="store_true", help="print CSV (for spreadsheets)")
    report.set_defaults(store_handler=_report)
    add_url_option(report)
