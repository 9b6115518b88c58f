"""Alembic migrations per dialect (up, in sync with the models, down, up), the CLI, the wheel."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.util import CommandError
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, inspect, select, text
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow import cli
from taskflow.db import migrate, revision
from taskflow.db.engine import create_engine_for
from taskflow.db.tables import metadata, tasks_table
from taskflow.repository.sql.batch import BatchStatements
from taskflow.settings import ENV_DATABASE_URL, resolve_database_url

REPO_ROOT = Path(__file__).resolve().parents[2]
TASKFLOW_TABLES = {table.name for table in metadata.sorted_tables}
HEAD = "0008"


@asynccontextmanager
async def open_engine(url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine_for(resolve_database_url(url))
    try:
        yield engine
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


def task_row(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    row: dict[str, Any] = {
        "id": "00000000-0000-0000-0000-000000000001",
        "func_name": "send_email",
        "status": "pending",
        "source": "manual",
        "attempt": 0,
        "max_retries": 0,
        "run_at": now,
        "created_at": now,
        "updated_at": now,
        "payload_format": "json",
        "lease_epoch": 0,
    }
    return row | overrides


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command with the checkout importable and no inherited TASKFLOW_DATABASE_URL."""
    full_env = {k: v for k, v in os.environ.items() if k != ENV_DATABASE_URL}
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p
    )
    full_env.update(env or {})
    return subprocess.run(
        args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=90, check=False
    )


def taskflow_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "taskflow.cli", *args, cwd=cwd)


# --- the migration cycle, per dialect ---


def test_scripts_are_found_and_head_is_known() -> None:
    location = Path(migrate.script_location())
    assert (location / "env.py").is_file()
    assert (location / "versions" / "0001_initial.py").is_file()
    assert migrate.head_revision() == HEAD
    # The startup check reads this constant instead of importing Alembic.
    assert revision.EXPECTED_REVISION == HEAD


async def test_upgrade_check_downgrade_upgrade(db_url: str) -> None:
    async with open_engine(db_url) as engine:
        assert await migrate.current(engine) is None
        assert await table_names(engine) == set()

        await migrate.upgrade(engine)
        assert await migrate.current(engine) == HEAD
        assert await table_names(engine) == TASKFLOW_TABLES | {migrate.VERSION_TABLE}
        assert await migrate.check(engine) == []

        await migrate.downgrade(engine, "base")
        assert await migrate.current(engine) is None
        # Alembic keeps its (now empty) version table; every taskflow table is gone.
        assert await table_names(engine) == {migrate.VERSION_TABLE}

        await migrate.upgrade(engine, "head")
        assert await migrate.current(engine) == HEAD
        assert await migrate.check(engine) == []


async def assert_checks_refuse_bad_values(engine: AsyncEngine) -> None:
    for column, bad in (("status", "exploded"), ("source", "nowhere")):
        # IntegrityError on SQLite and PostgreSQL; MariaDB's error 4025 is
        # an OperationalError to PyMySQL. Each names the constraint.
        with pytest.raises(DBAPIError, match=f"ck_taskflow_tasks_{column}"):
            async with engine.begin() as conn:
                await conn.execute(
                    insert(tasks_table).values(task_row(id=f"bad-{column}", **{column: bad}))
                )


async def test_check_constraints_are_created_and_enforced(db_url: str) -> None:
    async with open_engine(db_url) as engine:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(insert(tasks_table).values(task_row()))
        await assert_checks_refuse_bad_values(engine)
        async with engine.connect() as conn:
            assert (await conn.execute(select(tasks_table.c.id))).scalars().all() == [
                task_row()["id"]
            ]


def temporary_btrees(sqlite_path: str) -> int:
    """How many temporary B-trees SQLite's plans build per row the writer inserts and updates."""
    statements = BatchStatements(sqlite_dialect.dialect())
    with sqlite3.connect(sqlite_path) as conn:
        plans = [
            conn.execute(f"EXPLAIN {sql}", [None] * sql.count("?")).fetchall()
            for sql in (statements.insert_task_sql, statements.update_task_sql)
        ]
    return sum(1 for plan in plans for step in plan if step[1] == "OpenEphemeral")


async def test_0004_keeps_rows_and_checks_and_drops_sqlite_temporary_btrees(
    db_url: str, backend_name: str
) -> None:
    async with open_engine(db_url) as engine:
        await migrate.upgrade(engine, "0003")
        async with engine.begin() as conn:
            await conn.execute(insert(tasks_table).values(task_row()))
        sqlite_path = db_url.removeprefix("sqlite:///") if backend_name == "sqlite" else None
        if sqlite_path:
            # The IN lists of 0001's checks: a B-tree per row for status and source
            # on insert, for status on update.
            assert temporary_btrees(sqlite_path) == 3
        await migrate.upgrade(engine)
        if sqlite_path:
            assert temporary_btrees(sqlite_path) == 0
        await assert_checks_refuse_bad_values(engine)
        async with engine.begin() as conn:
            await conn.execute(insert(tasks_table).values(task_row(id="ok", status="cancelled")))
            ids = (await conn.execute(select(tasks_table.c.id))).scalars().all()
        assert sorted(ids) == sorted([task_row()["id"], "ok"])
        assert await migrate.check(engine) == []
        await migrate.downgrade(engine, "0003")
        if sqlite_path:
            assert temporary_btrees(sqlite_path) == 3
        with pytest.raises(DBAPIError, match="ck_taskflow_tasks_status"):
            async with engine.begin() as conn:
                await conn.execute(insert(tasks_table).values(task_row(id="x", status="nope")))


async def test_tables_from_an_older_create_all_are_adopted_and_upgraded(
    db_url: str, backend_name: str
) -> None:
    """Unversioned tables that match the models still get 0004's rewrite (and the revision)."""
    async with open_engine(db_url) as engine:
        await migrate.upgrade(engine, "0003")  # the tables an older create_all made
        async with engine.begin() as conn:
            await conn.execute(text(f"DELETE FROM {migrate.VERSION_TABLE}"))
        assert await migrate.current(engine) is None
        await migrate.ensure_schema(engine)
        assert await migrate.current(engine) == HEAD
        assert await migrate.check(engine) == []
    if backend_name == "sqlite":
        assert temporary_btrees(db_url.removeprefix("sqlite:///")) == 0


OLD_SQLITE_INSERT = (
    "INSERT INTO taskflow_tasks (id, func_name, status, source, attempt, max_retries, run_at, "
    "created_at, updated_at, started_at, payload_format, lease_epoch, tags) VALUES ('old', "
    "'send_email', 'success', 'manual', 0, 0, '2026-12-07 10:04:28.864195', "
    "'2026-12-07 10:04:28.864195', '2026-12-07 10:04:28.864195', '2026-12-07 10:04:29', "
    "'json', 0, '{\"tenant\": \"t1\"}')"
)
SQLITE_TIMES = "SELECT run_at, started_at, finished_at FROM taskflow_tasks WHERE id = 'old'"


async def sql_rows(engine: AsyncEngine, sql: str) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(text(sql))]


async def test_0007_sqlite_timestamps_become_rfc3339_text(tmp_path: Path) -> None:
    async with open_engine(f"sqlite:///{tmp_path}/old.db") as engine:
        await migrate.upgrade(engine, "0006")
        async with engine.begin() as conn:
            await conn.execute(text(OLD_SQLITE_INSERT))
            await conn.execute(
                text(
                    "INSERT INTO taskflow_instances (id, hostname, pid, started_at, heartbeat_at) "
                    "VALUES ('i', 'h', 1, '2026-12-07 10:00:00.000001', '2026-12-07 10:05:00.5')"
                )
            )
        await migrate.upgrade(engine)
        assert await sql_rows(engine, SQLITE_TIMES) == [
            ("2026-12-07T10:04:28.864195Z", "2026-12-07T10:04:29.000000Z", None)
        ]
        beats = "SELECT started_at, heartbeat_at FROM taskflow_instances"
        assert await sql_rows(engine, beats) == [
            ("2026-12-07T10:00:00.000001Z", "2026-12-07T10:05:00.500000Z")
        ]
        async with engine.connect() as conn:
            started = (await conn.execute(select(tasks_table.c.started_at))).scalar_one()
        assert started == datetime(2026, 12, 7, 10, 4, 29, tzinfo=timezone.utc)
        # An instant as the API shows it now compares as the same instant.
        api_instant = "SELECT COUNT(*) FROM taskflow_tasks WHERE run_at >= :at"
        async with engine.connect() as conn:
            at = "2026-12-07T10:04:28.864195Z"
            assert (await conn.execute(text(api_instant), {"at": at})).scalar() == 1
        assert await migrate.check(engine) == []
        await migrate.downgrade(engine, "0006")
        assert await sql_rows(engine, SQLITE_TIMES) == [
            ("2026-12-07 10:04:28.864195", "2026-12-07 10:04:29.000000", None)
        ]


@pytest.mark.parametrize("backend_name", ["postgres"], indirect=True)
async def test_0007_postgresql_tags_become_jsonb(db_url: str) -> None:
    types = (
        "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
        "WHERE table_name LIKE 'taskflow_%' AND data_type IN ('json', 'jsonb') ORDER BY 1"
    )
    tagged = 'SELECT id FROM taskflow_tasks WHERE tags @> \'{"tenant": "t1"}\''
    as_json = [
        ("taskflow_audit.detail", "json"),
        ("taskflow_task_logs.extra", "json"),
        ("taskflow_tasks.args", "json"),
        ("taskflow_tasks.kwargs", "json"),
        ("taskflow_tasks.result", "json"),
        ("taskflow_tasks.tags", "json"),
    ]
    queried = ("taskflow_audit.detail", "taskflow_task_logs.extra", "taskflow_tasks.tags")
    async with open_engine(db_url) as engine:
        await migrate.upgrade(engine, "0006")
        async with engine.begin() as conn:
            await conn.execute(insert(tasks_table).values(task_row(tags={"tenant": "t1"})))
        assert await sql_rows(engine, types) == as_json
        await migrate.upgrade(engine)
        assert await sql_rows(engine, types) == [
            (column, "jsonb" if column in queried else kind) for column, kind in as_json
        ]
        assert await sql_rows(engine, tagged) == [(task_row()["id"],)]
        # An index of the user's own on taskflow's table is not a difference.
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "CREATE INDEX app_tasks_tags ON taskflow_tasks USING gin (tags jsonb_path_ops)"
                )
            )
        assert await migrate.check(engine) == []
        async with engine.begin() as conn:
            await conn.execute(text("DROP INDEX app_tasks_tags"))
        await migrate.downgrade(engine, "0006")
        assert await sql_rows(engine, types) == as_json
        async with engine.connect() as conn:
            tags = (await conn.execute(select(tasks_table.c.tags))).scalar_one()
        assert tags == {"tenant": "t1"}


def test_offline_sql_script_to_head(tmp_path: Path) -> None:
    """``alembic upgrade --sql`` writes a script without a database; 0004 has nothing to add."""
    result = run(
        sys.executable, "-m", "alembic", "-x", f"url=sqlite:///{tmp_path}/offline.db",
        "upgrade", "base:head", "--sql",
        cwd=REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE taskflow_tasks" in result.stdout
    assert "UPDATE taskflow_alembic_version SET version_num='0007'" in result.stdout


async def test_check_reports_drift(db_url: str) -> None:
    async with open_engine(db_url) as engine:
        await migrate.upgrade(engine)
        finished_index = next(
            index for index in tasks_table.indexes if index.name == "ix_taskflow_tasks_finished"
        )
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: finished_index.drop(sync))
            await conn.execute(text("ALTER TABLE taskflow_tasks ADD COLUMN surprise INTEGER"))
        differences = await migrate.check(engine)
    assert "remove_column taskflow_tasks.surprise" in differences
    assert any(d.startswith("add_index ix_taskflow_tasks_finished") for d in differences)
    assert len(differences) == 2, differences


# Real type changes on each server, including the one Alembic's default
# comparison misses (DATETIME vs DATETIME(6) on MySQL: lost microseconds).
TYPE_DRIFT = {
    "postgres": [
        (
            "ALTER TABLE taskflow_tasks ALTER COLUMN created_at TYPE timestamp without time zone",
            "modify_type taskflow_tasks.created_at",
        ),
        (
            "ALTER TABLE taskflow_tasks ALTER COLUMN tags TYPE text",
            "modify_type taskflow_tasks.tags",
        ),
        (
            "ALTER TABLE taskflow_tasks DROP CONSTRAINT ck_taskflow_tasks_status",
            "add_check_constraint ck_taskflow_tasks_status on taskflow_tasks",
        ),
    ],
    "mysql": [
        (
            "ALTER TABLE taskflow_tasks MODIFY created_at DATETIME NOT NULL",
            "modify_type taskflow_tasks.created_at: database has DATETIME, models want DATETIME(6)",
        ),
        ("ALTER TABLE taskflow_tasks MODIFY tags TEXT", "modify_type taskflow_tasks.tags"),
        ("ALTER TABLE taskflow_tasks MODIFY error TEXT", "modify_type taskflow_tasks.error"),
        (
            "ALTER TABLE taskflow_tasks MODIFY duration_ms FLOAT",
            "modify_type taskflow_tasks.duration_ms",
        ),
        (
            "ALTER TABLE taskflow_tasks DROP CONSTRAINT ck_taskflow_tasks_status",
            "add_check_constraint ck_taskflow_tasks_status on taskflow_tasks",
        ),
    ],
}


@pytest.mark.parametrize("backend_name", ["postgres", "mysql"], indirect=True)
async def test_check_reports_type_and_check_constraint_drift(
    db_url: str, backend_name: str
) -> None:
    async with open_engine(db_url) as engine:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            for ddl, _ in TYPE_DRIFT[backend_name]:
                await conn.execute(text(ddl))
        differences = await migrate.check(engine)
    for _, expected in TYPE_DRIFT[backend_name]:
        assert any(d.startswith(expected) for d in differences), (expected, differences)
    assert len(differences) == len(TYPE_DRIFT[backend_name]), differences


async def test_models_created_with_create_all_pass_check(engine: AsyncEngine) -> None:
    # The models and revision 0001 describe the same schema: the comparison
    # finds nothing either way round, so it is not tuned to the migration.
    assert await migrate.check(engine) == []
    assert await migrate.current(engine) is None


async def test_user_tables_and_alembic_history_are_left_alone(db_url: str) -> None:
    user = MetaData()
    orders = Table("orders", user, Column("id", Integer, primary_key=True))
    user_version = Table(
        "alembic_version", user, Column("version_num", String(32), primary_key=True)
    )
    async with open_engine(db_url) as engine:
        async with engine.begin() as conn:
            await conn.run_sync(user.create_all)
            await conn.execute(insert(orders).values(id=7))
            await conn.execute(insert(user_version).values(version_num="users_rev_42"))

        await migrate.upgrade(engine)
        assert await migrate.check(engine) == []  # "orders" is not ours to remove
        await migrate.downgrade(engine, "base")

        assert await table_names(engine) == {"orders", "alembic_version", migrate.VERSION_TABLE}
        async with engine.connect() as conn:
            assert (await conn.execute(select(orders.c.id))).scalars().all() == [7]
            versions = (await conn.execute(select(user_version.c.version_num))).scalars().all()
            assert versions == ["users_rev_42"]


async def test_env_runs_on_a_connection_handed_over_by_code(db_url: str) -> None:
    async with open_engine(db_url) as engine:
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(migrate.make_config(sync), "head"))
        assert await migrate.current(engine) == HEAD

        async with engine.connect() as conn:
            config = migrate.make_config()
            config.attributes["connection"] = conn  # the async one: a mistake
            with pytest.raises(CommandError, match="sync Connection"):
                command.upgrade(config, "head")


ENSURE_SCRIPT = """
import asyncio, pathlib, sys, time
from taskflow import TaskManager
from taskflow.db import migrate, revision
from taskflow.db.engine import create_engine_for
from taskflow.settings import resolve_database_url

async def main(url, number):
    # Imports done: say so, then start together with the others.
    pathlib.Path(f"ready-{number}").touch()
    deadline = time.monotonic() + 60
    while not pathlib.Path("go").exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    engine = create_engine_for(resolve_database_url(url))
    try:
        await migrate.ensure_schema(engine)
        print(await migrate.current(engine))
    finally:
        await engine.dispose()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""
PROCESSES = 4


async def test_ensure_schema_when_processes_start_at_once(db_url: str, tmp_path: Path) -> None:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", ENSURE_SCRIPT, db_url, str(number)],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number in range(PROCESSES)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < PROCESSES and time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            break
        await asyncio.sleep(0.01)
    (tmp_path / "go").touch()
    outcomes = [p.communicate(timeout=90) for p in processes]
    for process, (out, err) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, err
        assert out.strip() == HEAD
    async with open_engine(db_url) as engine:
        assert await migrate.check(engine) == []
        await migrate.ensure_schema(engine)  # already there: nothing to do
        assert await migrate.current(engine) == HEAD


async def test_ensure_schema_refuses_a_database_from_a_newer_taskflow(db_url: str) -> None:
    async with open_engine(db_url) as engine:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '9999'"))
        with pytest.raises(migrate.MigrationError, match="'9999', unknown to this taskflow"):
            await migrate.ensure_schema(engine)


# --- the command lines ---


@pytest.mark.parametrize("backend_name", ["sqlite", "postgres"], indirect=True)
def test_taskflow_db_commands(db_url: str, tmp_path: Path) -> None:
    result = taskflow_cli("db", "current", "--url", db_url, cwd=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, "base (no taskflow migration applied)")

    result = taskflow_cli("db", "check", "--url", db_url, cwd=tmp_path)
    assert result.returncode == 1
    assert "add_table taskflow_tasks" in result.stdout
    assert "run `taskflow db upgrade`" in result.stdout

    result = taskflow_cli("db", "upgrade", "--url", db_url, cwd=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, f"upgraded from base to {HEAD} (head)")
    result = taskflow_cli("db", "current", "--url", db_url, cwd=tmp_path)
    assert result.stdout.strip() == f"{HEAD} (head)"
    result = taskflow_cli("db", "check", "--url", db_url, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("in sync")

    result = taskflow_cli("db", "downgrade", "base", "--url", db_url, cwd=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, f"downgraded from {HEAD} to base")


def test_taskflow_db_reads_url_from_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/env.db"
    result = run(
        sys.executable, "-m", "taskflow.cli", "db", "upgrade",
        cwd=tmp_path, env={ENV_DATABASE_URL: url},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "env.db").is_file()


def test_taskflow_error_in_a_process_is_one_line(tmp_path: Path) -> None:
    result = taskflow_cli("db", "upgrade", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "taskflow: error: no database URL: pass --url URL (e.g. --url postgresql://user@host/db)"
        f" or set {ENV_DATABASE_URL}\n"
    )


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["db", "upgrade", "--url", "oracle://x/y"], 2, "unsupported database 'oracle'"),
        (["db", "current", "--url", "::nonsense::"], 2, "cannot parse database URL"),
        (
            ["db", "current", "--url", "postgresql://nobody@127.0.0.1:1/none"],
            1,
            "postgresql+asyncpg://nobody@127.0.0.1:1/none: ",
        ),
        (["db", "upgrade", "nosuchrev", "--url", "sqlite:///{tmp}/x.db"], 1, "nosuchrev"),
    ],
    ids=["bad-backend", "unparsable", "unreachable", "bad-revision"],
)
def test_taskflow_errors_are_one_line(
    args: list[str],
    status: int,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)
    assert cli.main([a.replace("{tmp}", str(tmp_path)) for a in args]) == status
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("taskflow: error: ")
    assert message in lines[0]


def test_taskflow_missing_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name == "asyncpg" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    status = cli.main(["db", "current", "--url", "postgresql://u@127.0.0.1/db"])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.count("\n") == 1
    assert 'pip install "taskflow-sql[postgres]"' in captured.err


@pytest.mark.parametrize("backend_name", ["sqlite", "mysql"], indirect=True)
async def test_alembic_command_from_the_checkout(db_url: str) -> None:
    alembic = (sys.executable, "-m", "alembic")
    result = run(*alembic, "upgrade", "head", cwd=REPO_ROOT, env={ENV_DATABASE_URL: db_url})
    assert result.returncode == 0, result.stderr
    assert "Running upgrade  -> 0001" in result.stderr
    assert "Running upgrade 0001 -> 0002" in result.stderr
    assert "Running upgrade 0003 -> 0004" in result.stderr

    result = run(*alembic, "check", cwd=REPO_ROOT, env={ENV_DATABASE_URL: db_url})
    assert result.returncode == 0, result.stderr
    # -x url= wins over the environment
    result = run(
        *alembic, "-x", f"url={db_url}", "current",
        cwd=REPO_ROOT, env={ENV_DATABASE_URL: "sqlite:////nonexistent/dir/x.db"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{HEAD} (head)" in result.stdout

    async with open_engine(db_url) as engine:
        assert await migrate.current(engine) == HEAD
        assert await migrate.check(engine) == []


def test_alembic_command_without_url_says_how_to_pass_one() -> None:
    result = run(sys.executable, "-m", "alembic", "upgrade", "head", cwd=REPO_ROOT)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "no database URL: pass `alembic -x url=" in result.stderr


# --- shipping the scripts in the wheel ---


def test_every_package_is_listed_for_the_wheel() -> None:
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    # No remap: an editable install stays a .pth path entry that mypy can follow
    # (setup.py copies migrations/ into the wheel as taskflow/_migrations).
    assert setuptools["package-dir"] == {"": "."}
    on_disk = {
        ".".join(path.parent.relative_to(REPO_ROOT).parts)
        for path in (REPO_ROOT / "taskflow").rglob("*.py")
        if "__pycache__" not in path.parts and "_migrations" not in path.parts
    }
    assert on_disk == set(setuptools["packages"]), "list taskflow's packages in pyproject.toml"
