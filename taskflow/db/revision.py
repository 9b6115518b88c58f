"""The schema revision this taskflow expects, checked at startup without importing Alembic.

On PostgreSQL and MySQL the user runs the migrations.  An app upgraded
without ``taskflow db upgrade`` would otherwise fail later, on the first
statement that needs a new table or column, with an error that does not say
what to do.  Reading one row of the version table is cheap; importing
Alembic to find its head is not (a tenth of a second), so the expected
revision is a constant here, and a test keeps it equal to the newest script.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

EXPECTED_REVISION = "0007"
VERSION_TABLE = "taskflow_alembic_version"


async def revision_problem(engine: AsyncEngine) -> str | None:
    """What is wrong with the database's revision, with the fix; None when it is current.

    A database without the version table is not judged: its tables may be
    managed another way (``create_tables=True``, the app's own migrations).
    """
    try:
        async with engine.connect() as conn:
            found = (await conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))).all()
    except DBAPIError:
        return None
    revisions = {row[0] for row in found}
    if revisions == {EXPECTED_REVISION}:
        return None
    shown = ", ".join(sorted(revisions)) or "none"
    if revisions and all(r > EXPECTED_REVISION for r in revisions):
        return (
            f"the database is at taskflow schema revision {shown}, newer than this taskflow "
            f"({EXPECTED_REVISION}): upgrade taskflow-sql to the version that migrated it"
        )
    return (
        f"the database is at taskflow schema revision {shown}, but this taskflow needs "
        f"{EXPECTED_REVISION}: run `taskflow db upgrade --url <database url>` "
        "(or `alembic upgrade head`) before serving"
    )
