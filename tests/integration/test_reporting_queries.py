"""Every SQL query of docs/guide/reporting.md, run on its databases against known data.

The queries are read from the guide itself: each ```sql fence names the
databases it is for and its report (```sql sqlite report=failures-per-function),
so the guide and this test cannot drift apart.  Seeded through the
repository's own write path, with timestamps relative to now; run with a
session time zone that is not UTC, as a user's console may have.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from taskflow import TaskManager, TaskStatus
from taskflow.db.engine import create_engine_for
from taskflow.db.tables import instances_table
from taskflow.models import TaskRecord
from taskflow.repository.base import WriteBatch
from taskflow.settings import resolve_database_url

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "reporting.md"
DIALECTS = {"sqlite": "sqlite", "postgres": "postgresql", "mysql": "mysql"}
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SESSION_ZONE = {
    "postgresql": "SET TIME ZONE 'Asia/Kolkata'",
    "mysql": "SET time_zone = '+05:30'",
}
SMTP = "SMTPServerDisconnected: Connection unexpectedly closed"
MEMORY = "MemoryError: image too large"
TIMEOUT = "TimeoutError: CRM did not answer in 30 s"


@dataclass(frozen=True)
class Query:
    report: str
    dialects: tuple[str, ...]
    sql: str


def guide_queries() -> list[Query]:
    """Every ```sql fence of the guide; a fence without databases or report name fails."""
    queries = []
    for fence in FENCE.finditer(GUIDE.read_text()):
        words = fence["info"].split()
        if not words or words[0] != "sql":
            continue
        names = [w.removeprefix("report=") for w in words[1:] if w.startswith("report=")]
        dialects = tuple(w for w in words[1:] if not w.startswith("report="))
        assert len(names) == 1, f"a sql fence without one report=name: {fence['info']!r}"
        assert dialects and set(dialects) <= set(DIALECTS.values()), fence["info"]
        queries.append(Query(names[0], dialects, fence["body"]))
    return queries


def test_every_report_is_given_for_every_database() -> None:
    queries = guide_queries()
    sql_fences = re.findall(r"^```sql\b", GUIDE.read_text(), flags=re.MULTILINE)
    assert len(queries) == len(sql_fences)
    reports = {q.report for q in queries}
    assert reports == set(expected_answers(datetime.now(timezone.utc)))
    for report in reports:
        covered = [d for q in queries if q.report == report for d in q.dialects]
        assert sorted(covered) == sorted(DIALECTS.values()), report


# --- the data ---


def finished(
    task_id: str,
    func_name: str,
    status: TaskStatus,
    end: datetime,
    duration_ms: float,
    *,
    tags: dict[str, str] | None = None,
    error: str | None = None,
    retried_from: str | None = None,
) -> TaskRecord:
    start = end - timedelta(milliseconds=duration_ms)
    return TaskRecord(
        task_id=task_id,
        func_name=func_name,
        status=status,
        created_at=start - timedelta(seconds=1),
        run_at=start - timedelta(seconds=1),
        updated_at=end,
        start_time=start,
        end_time=end,
        duration_ms=duration_ms,
        tags=tags or {},
        error=error,
        retried_from=retried_from,
        source="retry" if retried_from else "manual",
    )


def scheduled(task_id: str, schedule: str, slot: datetime, late_s: float) -> TaskRecord:
    record = finished(task_id, schedule, TaskStatus.SUCCESS, slot + timedelta(seconds=late_s), 10)
    record.start_time = slot + timedelta(seconds=late_s)
    record.end_time = record.start_time + timedelta(milliseconds=10)
    record.schedule_name, record.scheduled_for, record.source = schedule, slot, "scheduled"
    return record


def running(task_id: str, func_name: str, owner: str, now: datetime) -> TaskRecord:
    start = now - timedelta(minutes=1)
    return TaskRecord(
        task_id=task_id,
        func_name=func_name,
        status=TaskStatus.RUNNING,
        created_at=start,
        run_at=start,
        updated_at=start,
        start_time=start,
        owner=owner,
        lease_epoch=1,
        lease_expires_at=now + timedelta(minutes=10),
    )


def imported(task_id: str, created: str) -> TaskRecord:
    moment = datetime.fromisoformat(created)
    return TaskRecord(
        task_id=task_id,
        func_name="import_feed",
        status=TaskStatus.CANCELLED,
        created_at=moment,
        run_at=moment,
        updated_at=moment,
        end_time=moment,
    )


def seed_tasks(now: datetime) -> list[TaskRecord]:
    def ago(hours: float) -> datetime:
        return now - timedelta(hours=hours)

    ok, failed = TaskStatus.SUCCESS, TaskStatus.FAILED
    t1, t2 = {"tenant": "t1"}, {"tenant": "t2"}
    return [
        finished("task-01", "send_email", ok, ago(1.5), 120, tags=t1),
        finished("task-02", "send_email", ok, ago(2.5), 80, tags=t1),
        finished("task-03", "send_email", ok, ago(2.5), 200, tags=t2),
        finished("task-04", "send_email", ok, ago(5.5), 95, tags=t1),
        finished("task-05", "send_email", ok, ago(5.5), 150, tags=t2),
        finished("task-06", "send_email", ok, ago(20.5), 110, tags=t1),
        finished("task-07", "send_email", failed, ago(1.5), 30, tags=t1, error=SMTP),
        finished("task-08", "send_email", failed, ago(20.5), 40, tags=t2, error=SMTP),
        finished("task-09", "resize_image", ok, ago(2.5), 900, tags=t2),
        finished("task-10", "resize_image", ok, ago(5.5), 1500, tags=t2),
        finished("task-11", "resize_image", ok, ago(5.5), 2500),
        finished("task-12", "resize_image", failed, ago(1.5), 700, tags=t2, error=MEMORY),
        # A chain: failed, retried and failed again, retried and succeeded.
        finished("task-13", "sync_crm", failed, ago(5.5), 30000, tags=t1, error=TIMEOUT),
        finished(
            "task-14", "sync_crm", failed, ago(2.5), 30000, tags=t1, error=TIMEOUT,
            retried_from="task-13",
        ),
        finished("task-15", "sync_crm", ok, ago(1.5), 4000, tags=t1, retried_from="task-14"),
        # Older than a day, younger than a week.
        finished("task-16", "send_email", failed, ago(30), 35, tags=t1, error=SMTP),
        finished("task-17", "send_email", ok, ago(30), 5000),
        scheduled("task-18", "hourly_digest", ago(3), 2.0),
        scheduled("task-19", "hourly_digest", ago(2), 4.5),
        scheduled("task-20", "hourly_digest", ago(27), 60.0),
        scheduled("task-21", "cleanup", ago(4), 0.25),
        # An instant as the API shows it, a microsecond before it, and later that day.
        imported("task-22", "2026-01-15T09:49:19.732561+00:00"),
        imported("task-23", "2026-01-15T09:49:19.732562+00:00"),
        imported("task-24", "2026-01-15T18:00:00+00:00"),
        running("task-25", "send_email", "inst-a", now),
        running("task-26", "resize_image", "inst-a", now),
        running("task-27", "sync_crm", "inst-b", now),
    ]  # fmt: skip


def seed_instances(now: datetime) -> list[dict[str, Any]]:
    def instance(name: str, heartbeat_ago_s: float, stopped: bool = False) -> dict[str, Any]:
        beat = now - timedelta(seconds=heartbeat_ago_s)
        return {
            "id": name,
            "hostname": f"host-{name}",
            "pid": 100,
            "started_at": now - timedelta(hours=2),
            "heartbeat_at": beat,
            "stopped_at": beat if stopped else None,
            "version": None,
        }

    return [
        instance("inst-a", 10),
        instance("inst-b", 20),
        instance("inst-c", 10),
        instance("inst-stale", 3600),
        instance("inst-stopped", 30, stopped=True),
    ]


# --- the answers ---


def utc_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def hourly(tasks: Sequence[TaskRecord], now: datetime) -> list[tuple[Any, ...]]:
    counts: dict[str, list[int]] = {}
    for task in tasks:
        if task.end_time is not None and task.end_time >= now - timedelta(days=1):
            cell = counts.setdefault(task.end_time.strftime("%Y-%m-%dT%H:00:00Z"), [0, 0])
            cell[0] += 1
            cell[1] += task.status is TaskStatus.FAILED
    return [(hour, *cell) for hour, cell in sorted(counts.items())]


def expected_answers(now: datetime) -> dict[str, list[tuple[Any, ...]]]:
    tasks = {task.task_id: task for task in seed_tasks(now)}

    def end(task_id: str) -> str:
        moment = tasks[task_id].end_time
        assert moment is not None
        return utc_text(moment)

    return {
        "failures-per-function": [("send_email", 2), ("sync_crm", 2), ("resize_image", 1)],
        "failure-rate": [
            ("sync_crm", 3, 2, 66.7),
            ("resize_image", 4, 1, 25.0),
            ("send_email", 8, 2, 25.0),
            ("cleanup", 1, 0, 0.0),
            ("hourly_digest", 2, 0, 0.0),
        ],
        "throughput-per-hour": hourly(list(tasks.values()), now),
        # Every duration seeded lies alone in its bucket: the bound is the value.
        "percentiles-from-rollup": [
            ("cleanup", 1, 10, 10),
            ("hourly_digest", 3, 10, 10),
            ("resize_image", 4, 900, 2500),
            ("send_email", 10, 95, 5000),
            ("sync_crm", 3, 30000, 30000),
        ],
        "percentiles-last-day": [
            ("cleanup", 1, 10, 10),
            ("hourly_digest", 2, 10, 10),
            ("resize_image", 4, 900, 2500),
            ("send_email", 8, 95, 200),
            ("sync_crm", 3, 30000, 30000),
        ],
        "by-tag": [("t1", 8, 3), ("t2", 6, 2)],
        "tenant-failures": [("sync_crm", 2), ("send_email", 1)],
        "slowest-tasks": [
            ("task-13", "sync_crm", 30000),
            ("task-14", "sync_crm", 30000),
            ("task-15", "sync_crm", 4000),
            ("task-11", "resize_image", 2500),
            ("task-10", "resize_image", 1500),
        ],
        "retry-chains": [("sync_crm", "task-13", 2, "success")],
        "schedule-lateness": [("cleanup", 1, 0.25, 0.25), ("hourly_digest", 2, 3.25, 4.5)],
        "load-per-instance": [
            ("inst-a", "host-inst-a", 2),
            ("inst-b", "host-inst-b", 1),
            ("inst-c", "host-inst-c", 0),
        ],
        "dead-letters": [(SMTP, 3, end("task-07")), (MEMORY, 1, end("task-12"))],
        "since-instant": [(2,)],
    }


def normalized(value: Any) -> Any:
    """One form per value whatever the driver returns: numbers, UTC instants as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, Decimal)):
        return round(float(value), 3)
    if isinstance(value, datetime):
        return utc_text(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    return value


def rows_of(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    return [tuple(normalized(value) for value in row) for row in rows]


# --- running them ---


def run_all(sync: Connection, dialect: str, queries: list[Query]) -> dict[str, list[Any]]:
    """Each query through the driver's own cursor, as a SQL console would send it."""
    cursor = sync.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if dialect in SESSION_ZONE:
            cursor.execute(SESSION_ZONE[dialect])
        answers = {}
        for query in queries:
            cursor.execute(query.sql)
            answers[query.report] = list(cursor.fetchall())
        return answers
    finally:
        cursor.close()


async def test_reporting_queries_give_known_answers(db_url: str, backend_name: str) -> None:
    dialect = DIALECTS[backend_name]
    queries = [q for q in guide_queries() if dialect in q.dialects]
    now = datetime.now(timezone.utc)
    manager = TaskManager(database_url=db_url, create_tables=True)
    await manager.startup()
    try:
        # The repository's write path: the stored forms and the roll-up are taskflow's own.
        await manager.repository.apply(WriteBatch(inserts=seed_tasks(now)))
    finally:
        await manager.shutdown()
    engine = create_engine_for(resolve_database_url(db_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(instances_table), seed_instances(now))
        async with engine.connect() as conn:
            answers = await conn.run_sync(run_all, dialect, queries)
            await conn.rollback()
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()

    expected = expected_answers(now)
    assert len(answers) == len(queries) == len(expected)
    for query in queries:
        assert rows_of(answers[query.report]) == rows_of(expected[query.report]), query.report
