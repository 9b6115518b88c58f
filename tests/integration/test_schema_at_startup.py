"""Starting on a database whose schema is missing, behind or ahead: one line that says what to do.

A manager that does not migrate (``create_tables=False``, the default on
PostgreSQL and MySQL) reads the schema at startup and refuses a database it
cannot run on with a ``ConfigurationError`` of one line, chained to nothing,
that names the fix; nothing of the failed start stays connected.  Tables with
no version table of taskflow's (made by ``metadata.create_all``, or by the
app's own Alembic history) are not judged.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow import ConfigurationError, TaskAdmin, TaskManager
from taskflow.db import migrate
from taskflow.db.engine import create_engine_for
from taskflow.db.revision import EXPECTED_REVISION, VERSION_TABLE, plain_url
from taskflow.settings import resolve_database_url

REPO_ROOT = Path(__file__).resolve().parents[2]
_OTHER_CONNECTIONS = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    "mysql": "SELECT count(*) FROM information_schema.processlist"
    " WHERE db = DATABASE() AND id <> CONNECTION_ID()",
}


@asynccontextmanager
async def open_engine(url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine_for(resolve_database_url(url))
    try:
        yield engine
    finally:
        await engine.dispose()


async def other_connections(url: str) -> int:
    """Connections to the test database other than this query's own (0 on SQLite)."""
    async with open_engine(url) as engine:
        query = _OTHER_CONNECTIONS.get(engine.dialect.name)
        if query is None:
            return 0
        async with engine.connect() as conn:
            return int((await conn.execute(text(query))).scalar_one())


async def refused_start(url: str, manager: TaskManager | None = None) -> str:
    """Start a non-migrating manager that must refuse; returns its message once all is closed."""
    before = await other_connections(url)
    if manager is None:
        manager = TaskManager(database_url=url, create_tables=False)
    with pytest.raises(ConfigurationError) as refused:
        await manager.startup()
    await manager.shutdown()
    error = refused.value
    assert error.__cause__ is None and error.__context__ is None, "chained to a driver error"
    message = str(error)
    assert "\n" not in message
    assert not manager.started
    pool = manager.repository.engine.pool  # type: ignore[attr-defined]
    assert pool.checkedout() == 0 and pool.checkedin() == 0, "the engine was not disposed"
    assert await other_connections(url) == before, "a connection stayed open"
    return message


async def test_no_tables_refuses_the_start_naming_both_fixes(db_url: str) -> None:
    message = await refused_start(db_url)
    url = plain_url(resolve_database_url(db_url).url)
    assert message.startswith(f"taskflow's tables are missing from {url}: "), message
    assert f"`taskflow db upgrade --url {url}`" in message
    assert "create_tables=True" in message


async def test_after_downgrade_base_the_start_is_refused_too(db_url: str) -> None:
    async with open_engine(db_url) as engine:
        await migrate.upgrade(engine)
        await migrate.downgrade(engine, "base")  # leaves an empty version table
    assert "tables are missing" in await refused_start(db_url)


async def test_a_database_behind_names_the_upgrade(db_url: str) -> None:
    async with open_engine(db_url) as engine:
        await migrate.upgrade(engine)
        await migrate.downgrade(engine, "-1")
        previous = await migrate.current(engine)
    manager = TaskManager(database_url=db_url, create_tables=False)
    message = await refused_start(db_url, manager)
    assert f"revision {previous}, but this taskflow needs {EXPECTED_REVISION}" in message
    assert "taskflow db upgrade --url " in message
    # The fix the message names works, and the same manager then starts.
    async with open_engine(db_url) as engine:
        await migrate.upgrade(engine)
    await manager.startup()
    assert manager.started
    await manager.shutdown()


async def test_a_database_ahead_says_the_package_is_older(db_url: str) -> None:
    async with open_engine(db_url) as engine:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    message = await refused_start(db_url)
    assert "revision 9999, newer than this taskflow's" in message
    assert "older than the database" in message and "upgrade the package" in message


async def test_tables_without_a_version_table_are_not_judged(schema_db_url: str) -> None:
    # metadata.create_all, or taskflow's revisions run by the app's own Alembic.
    manager = TaskManager(database_url=schema_db_url, create_tables=False)
    await manager.startup()
    await manager.shutdown()


async def test_a_fastapi_app_fails_to_start_with_the_message(db_url: str) -> None:
    manager = TaskManager(database_url=db_url, create_tables=False)
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True)
    with pytest.raises(ConfigurationError, match="taskflow db upgrade --url"):
        async with app.router.lifespan_context(app):
            pytest.fail("the app started")
    await manager.shutdown()
    assert manager.repository.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.subprocess
@pytest.mark.parametrize("backend_name", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_uvicorn_exits_with_the_one_line_error(db_url: str, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TASKFLOW_DATABASE_URL=db_url)
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "tests.apps.lifecycle_app:app", "--port", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Application startup failed" in output, output
    errors = [line for line in output.splitlines() if line.startswith("taskflow.exceptions.")]
    assert len(errors) == 1 and "taskflow db upgrade --url" in errors[0], output
    # No driver error and no second traceback chained to it.
    assert "does not exist" not in output and "The above exception" not in output, output
    assert "During handling" not in output, output
