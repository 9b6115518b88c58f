"""``taskflow tasks retry ID`` and ``taskflow tasks retry-failed``: new pending rows, audited.

These run the admin API's own code (``taskflow.replay.Replayer``): a retry
is a new pending, unowned task row holding a copy of the original's stored
arguments, which the dispatcher of any running app instance claims and
runs.  No TaskManager is started here, and nothing runs in this process.

The admin API gives a retry its function's current ``retries`` setting from
the app's registry.  The command line does not import the app, so a retry
keeps the setting stored on the newest failed task of its function, and
whether the app still has that function is not checked here.  Encrypted
arguments are copied as they are, for the instances (which hold the key)
to decrypt.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

from taskflow.cli import audited
from taskflow.cli.output import Progress, print_json, when
from taskflow.cli.parser import EXIT_OK, Commands, UsageError
from taskflow.cli.reads import find_task, pages
from taskflow.cli.since import FORMS, since_argument
from taskflow.models import TaskConfig, utcnow
from taskflow.registry import RegisteredTask, TaskRegistry
from taskflow.replay import (
    MAX_REPLAY_DISPATCH,
    MAX_REPLAY_SCAN,
    REPLAYABLE,
    Replayer,
    RetryReport,
)
from taskflow.repository.base import RetryCopy, TaskQuery, TaskRepository

DEFAULT_SINCE = "24h"


def _runs_elsewhere(*args: Any, **kwargs: Any) -> None:
    """Stands for a task function: the instances that claim the retries call the real one."""
    raise NotImplementedError("the command line never runs a task")


class StoredSettings(TaskRegistry):
    """A registry that knows each function only by the ``retries`` stored with its tasks."""

    def __init__(self, retries: dict[str, int]) -> None:
        super().__init__()
        self.retries = retries

    def resolve(self, name: str) -> RegisteredTask:
        config = TaskConfig(retries=self.retries.get(name, 0))
        return RegisteredTask(name=name, func=_runs_elsewhere, config=config, registered=False)


class CountingReplayer(Replayer):
    """A ``Replayer`` that shows how many retries it has committed so far."""

    def __init__(self, repository: TaskRepository, registry: TaskRegistry, progress: Progress):
        super().__init__(repository, registry, can_decrypt=True, on_inserted=self._announce)
        self.progress = progress

    async def insert(self, copies: list[RetryCopy], report: RetryReport) -> None:
        await super().insert(copies, report)
        self.progress.update(report.dispatched)

    async def _announce(self) -> None:
        # Wakes the instances that listen (PostgreSQL, Redis); polling finds the rows regardless.
        await self.repository.announce_work()


async def _retry(args: argparse.Namespace, repository: TaskRepository) -> int:
    original = await find_task(repository, args.task_id)
    settings = StoredSettings({original.func_name: original.max_retries})
    replayer = CountingReplayer(repository, settings, Progress("retried", sys.stderr))
    new_id = await replayer.retry(args.task_id)
    await audited.record(repository, "retry", task_id=args.task_id, detail={"new_task_id": new_id})
    new = await find_task(repository, new_id)
    if args.json:
        print_json({"task_id": args.task_id, "new_task_id": new_id, "task": new.to_dict()})
    else:
        print(
            f"retried {args.task_id} as {new_id} ({new.func_name}): pending, "
            "a running app instance will pick it up"
        )
    return EXIT_OK


async def _scan(
    repository: TaskRepository, since: datetime, func: str | None
) -> tuple[int, dict[str, int]]:
    """How many failures the window holds (up to the replay's scan bound), and each
    function's stored ``retries``, from its newest failure."""
    query = TaskQuery(status=list(REPLAYABLE), func_name=func, created_since=since)
    count = 0
    retries: dict[str, int] = {}
    progress = Progress("failures found", sys.stderr)
    try:
        async for page in pages(repository, query, MAX_REPLAY_SCAN):
            count += len(page)
            progress.update(count)
            for record in page:  # newest first
                retries.setdefault(record.func_name, record.max_retries)
    finally:
        progress.finish()
    return count, retries


def _confirm(count: int, since: datetime, func: str | None) -> bool:
    what = f"{count} failed or interrupted task(s)" + (f" of {func}" if func else "")
    window = f"created since {when(since)} UTC"
    if not sys.stdin.isatty():
        raise UsageError(f"found {what} {window}: pass --yes to retry them without asking")
    sys.stderr.write(f"Retry {what} {window} (those retried before are skipped)? [y/N] ")
    sys.stderr.flush()
    try:
        answer = input()
    except EOFError:  # Ctrl-D: no answer is no
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def _describe(report: RetryReport) -> str:
    reasons = ", ".join(f"{r}: {n}" for r, n in sorted(report.skipped_by_reason.items()) if n)
    line = f"retried {report.dispatched} task(s), skipped {report.skipped}"
    return f"{line} ({reasons})" if reasons else line


async def _retry_failed(args: argparse.Namespace, repository: TaskRepository) -> int:
    count, retries = await _scan(repository, args.since, args.func)
    if count == 0:
        empty = RetryReport()
        print_json(empty.to_dict()) if args.json else print("no failed or interrupted tasks match")
        return EXIT_OK
    if not args.yes and not _confirm(count, args.since, args.func):
        print("nothing retried")
        return EXIT_OK
    progress = Progress("retried", sys.stderr)
    replayer = CountingReplayer(repository, StoredSettings(retries), progress)
    try:
        report = await replayer.replay(utcnow() - args.since, args.func)
    finally:
        progress.finish()
    await audited.record(
        repository,
        "retry_failed",
        detail={
            "since": args.since.isoformat(),
            "func_name": args.func,
            "dispatched": report.dispatched,
            "skipped": report.skipped,
            "capped": report.capped,
        },
    )
    if args.json:
        print_json(report.to_dict())
        return EXIT_OK
    print(_describe(report))
    if report.capped:
        print(f"stopped at {report.limit} retries: run the command again for the rest")
    return EXIT_OK


def add_retry_commands(actions: Commands) -> list[argparse.ArgumentParser]:
    """``tasks retry`` and ``tasks retry-failed``; returns their parsers."""
    retry = actions.add_parser(
        "retry",
        help="run a failed or interrupted task again, as a new task (audited)",
        description="Insert a new pending task with the original's arguments; a running app "
        "instance that has the function claims and runs it. Recorded in the audit log with "
        "your OS user name.",
    )
    retry.add_argument("task_id", metavar="ID")
    retry.set_defaults(store_handler=_retry)

    retry_failed = actions.add_parser(
        "retry-failed",
        help="retry every failed or interrupted task of a time window (audited)",
        description="Retry the newest failed or interrupted attempt of each task created in "
        "the window, as the admin API's retry-failed does: a failure retried before is "
        "skipped, and one call creates at most "
        f"{MAX_REPLAY_DISPATCH} retries (run it again for the rest).",
    )
    retry_failed.add_argument(
        "--since",
        type=since_argument,
        default=DEFAULT_SINCE,
        metavar="WHEN",
        help=f"tasks created since: {FORMS} (default: {DEFAULT_SINCE})",
    )
    retry_failed.add_argument("--func", metavar="NAME", help="only tasks of this function")
    retry_failed.add_argument(
        "--yes", "-y", action="store_true", help="do not ask (needed when stdin is not a terminal)"
    )
    retry_failed.set_defaults(store_handler=_retry_failed)
    return [retry, retry_failed]
