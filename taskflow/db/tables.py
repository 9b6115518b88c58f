"""The SQLAlchemy model set: taskflow's schema, and a public contract.

Users report on task history with plain SQL, so every column a report needs is
a typed column (never hidden in a pickle) and the indexes serve both the
dispatcher's claim query and the dashboard's pages.  The Alembic migrations in
``migrations/`` must always match these models; a test checks it per dialect.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from taskflow.db.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# MySQL's TEXT and BLOB stop at 64 KiB: stack traces and pickled payloads can
# be longer, so those columns widen there and nowhere else.
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
LongBinary = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
# The JSON that reports filter on (tags, log extras, audit details) is jsonb
# on PostgreSQL, so ``tags @> '{"tenant": "t1"}'`` works and can use a GIN
# index.  Arguments and results stay ``json``: jsonb reorders object keys and
# rewrites numbers (1e16 comes back as an integer), and a task's function must
# get its arguments exactly as they were passed.
QueryJSON = JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer(), "sqlite")

TASK_STATUSES = ("pending", "running", "success", "failed", "interrupted", "cancelled")
TASK_SOURCES = ("manual", "scheduled", "retry", "requeue")
ACTIVE_ONLY = "status IN ('pending', 'running')"
RETRIES_ONLY = "retried_from IS NOT NULL"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class HighestFirst(UnaryExpression[Any]):
    """A descending index column whose NULLs come last, as the claim orders priorities.

    ``DESC`` puts NULLs last on SQLite and MySQL; PostgreSQL needs ``NULLS
    LAST`` said, and the others cannot parse it.
    """

    inherit_cache = True

    def __init__(self, column: Any) -> None:
        super().__init__(column, modifier=operators.desc_op, wraps_column_expression=False)


@compiles(HighestFirst)
def _highest_first(element: HighestFirst, compiler: Any, **kw: Any) -> str:
    return f"{compiler.process(element.element, **kw)} DESC"


@compiles(HighestFirst, "postgresql")
def _highest_first_postgresql(element: HighestFirst, compiler: Any, **kw: Any) -> str:
    return f"{compiler.process(element.element, **kw)} DESC NULLS LAST"


def _one_of(column: str, values: tuple[str, ...]) -> str:
    # Comparisons, not ``IN (...)``: SQLite builds a temporary B-tree of an IN
    # list for every row it checks, about 30% of its work for a task's insert
    # and final update (revision 0004).
    return " OR ".join(f"{column} = '{v}'" for v in values)


class TaskRow(Base):
    """One task: its identity, state, timing, outcome, arguments and lease."""

    __tablename__ = "taskflow_tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    func_name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16), default="manual")
    executor: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=0)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duration_ms: Mapped[float | None] = mapped_column(Double)
    error: Mapped[str | None] = mapped_column(LongText)
    stacktrace: Mapped[str | None] = mapped_column(LongText)
    tags: Mapped[dict[str, Any] | None] = mapped_column(QueryJSON)
    args: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))
    kwargs: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    payload: Mapped[bytes | None] = mapped_column(LongBinary)
    payload_format: Mapped[str] = mapped_column(String(16), default="json")
    result: Mapped[Any | None] = mapped_column(JSON(none_as_null=True))
    owner: Mapped[str | None] = mapped_column(String(64))
    lease_epoch: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    retried_from: Mapped[str | None] = mapped_column(String(36))
    schedule_name: Mapped[str | None] = mapped_column(String(255))
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # Every index costs every insert and most transitions, so there are only
    # those a query needs.  The dispatcher's two indexes (one below the class)
    # cover active rows only where the dialect has partial indexes (PostgreSQL,
    # SQLite): they stay small however much history accumulates.
    __table_args__ = (
        CheckConstraint(_one_of("status", TASK_STATUSES), name="status"),
        CheckConstraint(_one_of("source", TASK_SOURCES), name="source"),
        Index("ix_taskflow_tasks_created", "created_at", "id"),
        Index("ix_taskflow_tasks_status_created", "status", "created_at"),
        Index("ix_taskflow_tasks_func_created", "func_name", "created_at"),
        Index("ix_taskflow_tasks_finished", "finished_at"),
        Index(
            "ix_taskflow_tasks_lease",
            "owner",
            "lease_expires_at",
            postgresql_where=text(ACTIVE_ONLY),
            sqlite_where=text(ACTIVE_ONLY),
        ),
        # A replay skips failures that were retried already: it looks their
        # retries up by origin.  Only retries have an origin, so where the
        # dialect allows, the index holds them alone.
        Index(
            "ix_taskflow_tasks_retried_from",
            "retried_from",
            postgresql_where=text(RETRIES_ONLY),
            sqlite_where=text(RETRIES_ONLY),
        ),
        # One firing per schedule slot, whichever instance fires it.
        Index(
            "uq_taskflow_tasks_schedule_slot",
            "schedule_name",
            "scheduled_for",
            unique=True,
            postgresql_where=text("schedule_name IS NOT NULL"),
            sqlite_where=text("schedule_name IS NOT NULL"),
        ),
    )


class TaskLogRow(Base):
    """One ``task_log()`` line, kept per attempt.

    The id is made by the writer (a time-ordered UUID), not by the database:
    a batch retried after its commit went through then skips lines it
    already stored instead of storing them twice.
    """

    __tablename__ = "taskflow_task_logs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    task_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("taskflow_tasks.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    level: Mapped[str] = mapped_column(String(16), default="info")
    message: Mapped[str] = mapped_column(LongText)
    extra: Mapped[dict[str, Any] | None] = mapped_column(QueryJSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_taskflow_task_logs_task", "task_id", "id"),)


class IdempotencyKeyRow(Base):
    """Maps an idempotency key to the task that owns it; the primary key makes claims race-free."""

    __tablename__ = "taskflow_idempotency_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RunKeyRow(Base):
    """Maps a ``schedule_once()`` run key to the task it armed last (revision 0008).

    The primary key is the arbiter, as for idempotency keys: arming a key
    locks its row, so two instances arming one key at once leave one task.
    A key whose task already ran keeps its row until it is armed or
    cancelled again, or retention deletes the task; a row never makes a
    finished task pending.
    """

    __tablename__ = "taskflow_run_keys"

    run_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Indexed for retention, which forgets the keys of the tasks it deletes.
    task_id: Mapped[str] = mapped_column(String(36), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ScheduleRow(Base):
    """A periodic entry, shared by every instance; ``next_run_at`` is the compare-and-swap slot."""

    __tablename__ = "taskflow_schedules"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    trigger: Mapped[str] = mapped_column(String(255))
    every_seconds: Mapped[float | None] = mapped_column(Double)
    cron: Mapped[str | None] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_task_id: Mapped[str | None] = mapped_column(String(36))
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class InstanceRow(Base):
    """One running app instance; its heartbeat tells the others it is alive."""

    __tablename__ = "taskflow_instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (Index("ix_taskflow_instances_heartbeat", "heartbeat_at"),)


class AuditRow(Base):
    """Who did what through the admin API."""

    __tablename__ = "taskflow_audit"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[str | None] = mapped_column(String(36))
    actor: Mapped[str] = mapped_column(String(255))
    detail: Mapped[dict[str, Any] | None] = mapped_column(QueryJSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_taskflow_audit_created", "created_at"),)


class AdminSessionRow(Base):
    """One dashboard login; the id is a hash of the cookie's token, never the token itself."""

    __tablename__ = "taskflow_admin_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LoginAttemptRow(Base):
    """A dashboard login attempt that has not succeeded, kept for the throttle's window.

    Every instance counts the same rows, so several instances allow a client
    no more guesses than one does.  ``client`` is a digest of the client's
    address, never the address itself.
    """

    __tablename__ = "taskflow_login_attempts"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    client: Mapped[str] = mapped_column(String(64))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_taskflow_login_attempts_client", "client", "attempted_at"),
        Index("ix_taskflow_login_attempts_at", "attempted_at"),
    )


class TaskStatsRow(Base):
    """Counts and a duration histogram of finished tasks, per function and status.

    Kept current in the transactions that finish or delete tasks, so metrics
    never scan the history.  ``bucket`` is a log-scale duration bucket (-1 for
    tasks that never ran); ``stripe`` spreads concurrent writers over rows.
    """

    __tablename__ = "taskflow_task_stats"

    func_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    stripe: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    task_count: Mapped[int] = mapped_column(BigInteger)
    duration_sum: Mapped[float] = mapped_column(Double)
    duration_min: Mapped[float | None] = mapped_column(Double)
    duration_max: Mapped[float | None] = mapped_column(Double)


metadata = Base.metadata
tasks_table = cast(Table, TaskRow.__table__)
task_logs_table = cast(Table, TaskLogRow.__table__)
idempotency_keys_table = cast(Table, IdempotencyKeyRow.__table__)
run_keys_table = cast(Table, RunKeyRow.__table__)
schedules_table = cast(Table, ScheduleRow.__table__)
instances_table = cast(Table, InstanceRow.__table__)
audit_table = cast(Table, AuditRow.__table__)
admin_sessions_table = cast(Table, AdminSessionRow.__table__)
task_stats_table = cast(Table, TaskStatsRow.__table__)
login_attempts_table = cast(Table, LoginAttemptRow.__table__)

# The dispatcher's claim index, in the claim's own order (highest priority
# first, unset last, then oldest due): a claim reads the first rows of it and
# stops, instead of sorting every pending row each time (revision 0006).
# Declared here, not in ``__table_args__``: its middle column is an expression.
Index(
    "ix_taskflow_tasks_due",
    tasks_table.c.status,
    HighestFirst(tasks_table.c.priority),
    tasks_table.c.run_at,
    postgresql_where=text(ACTIVE_ONLY),
    sqlite_where=text(ACTIVE_ONLY),
)
