"""The schema revision this taskflow expects, checked at startup without importing Alembic.

On PostgreSQL and MySQL the user runs the migrations.  An app started
without ``taskflow db upgrade`` would otherwise fail on the first statement
that needs a missing table or column, with a long driver traceback that does
not say what to do (and, before this check, with the start half done).
Reading the version table is cheap; importing Alembic to find its head is not
(a tenth of a second), so the expected revision is a constant here, and a test
keeps it equal to the newest script.
"""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.exceptions import ConfigurationError

EXPECTED_REVISION = "0008"
VERSION_TABLE = "taskflow_alembic_version"
# Present from revision 0001 on: its absence means taskflow's migrations never ran.
_FIRST_TABLE = "taskflow_tasks"


def plain_url(url: URL) -> str:
    """``url`` as the user would type it for ``taskflow db``: no async driver, no password."""
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


def _read(conn: Connection) -> tuple[bool, set[str] | None]:
    # One inspector, one round trip each: whether our tables exist, and the
    # revisions recorded (None without a version table).
    inspector = inspect(conn)
    has_tables = inspector.has_table(_FIRST_TABLE)
    if not inspector.has_table(VERSION_TABLE):
        return has_tables, None
    found = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
    return has_tables, {str(value) for value in found}


async def check_revision(engine: AsyncEngine) -> None:
    """Refuse a database without taskflow's tables, or at another revision than this taskflow's.

    Tables without a version table are not judged: they were made another
    way (``metadata.create_all``, or taskflow's migrations joined to the
    application's own Alembic history, whose version table is the app's).

    Raises:
        ConfigurationError: one line that names the fix.
        sqlalchemy.exc.DBAPIError: the database could not be read (startup
            retries those that are transient).
    """
    async with engine.connect() as conn:
        has_tables, revisions = await conn.run_sync(_read)
    problem = revision_problem(has_tables, revisions, plain_url(engine.url))
    if problem is not None:
        raise ConfigurationError(problem)


def revision_problem(has_tables: bool, revisions: set[str] | None, url: str) -> str | None:
    """What is wrong with the database's schema, with the fix; None when this taskflow can run."""
    upgrade = f"`taskflow db upgrade --url {url}`"
    if not revisions:
        if has_tables:
            return None
        return (
            f"taskflow's tables are missing from {url}: create them with {upgrade} "
            "(`alembic upgrade heads` if taskflow's migrations are part of your own Alembic), "
            "or pass create_tables=True to TaskManager to create them at startup"
        )
    if revisions == {EXPECTED_REVISION}:
        return None
    shown = ", ".join(sorted(revisions))
    if all(r > EXPECTED_REVISION for r in revisions):
        return (
            f"the database {url} is at taskflow schema revision {shown}, newer than this "
            f"taskflow's {EXPECTED_REVISION}: the installed taskflow-sql is older than the "
            "database; upgrade the package (pip install -U taskflow-sql) to the version "
            "that migrated it"
        )
    return (
        f"the database {url} is at taskflow schema revision {shown}, but this taskflow "
        f"needs {EXPECTED_REVISION}: run {upgrade} before starting (or pass "
        "create_tables=True to TaskManager to upgrade at startup)"
    )
