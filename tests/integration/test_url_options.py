"""URLs written for psycopg2 and PyMySQL connect through the async drivers."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from taskflow import TaskManager

OPTIONS = {
    "postgres": "sslmode=disable&connect_timeout=5&application_name=taskflow-url-test",
    "mysql": "ssl-mode=DISABLED&charset=utf8mb4&connect_timeout=5",
}


@pytest.mark.parametrize("backend_name", ["postgres", "mysql"])
async def test_sync_driver_options_work_against_the_server(
    schema_db_url: str, backend_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    separator = "&" if "?" in schema_db_url else "?"
    manager = TaskManager(database_url=f"{schema_db_url}{separator}{OPTIONS[backend_name]}")

    @manager.task()
    async def ping() -> str:
        return "pong"

    await manager.startup()
    try:
        task_id = await manager.enqueue(ping)
        await manager.drain()
        record = await manager.get_task(task_id)
        assert record is not None and record.result == "pong"
        if backend_name == "postgres":
            engine = manager.repository.engine  # type: ignore[attr-defined]
            async with engine.connect() as conn:
                name = (await conn.execute(text("SHOW application_name"))).scalar()
            assert name == "taskflow-url-test"
            # The LISTEN connection is opened with the same translated options.
            assert not [r for r in caplog.records if "unavailable" in r.getMessage()]
    finally:
        await manager.shutdown()
