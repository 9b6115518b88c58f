"""libpq's sslmode against the real server, through asyncpg and psycopg.

The test server may run without TLS (``SHOW ssl`` off); it is not
reconfigured for this.  Then ``sslmode=require`` must fail the start with an
error that says how to fix it (not retry for ever as if the server were
down), while ``prefer`` and ``disable`` connect.  With TLS on, ``require``
connects over TLS.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from taskflow import ConfigurationError, TaskManager

DRIVERS = pytest.mark.parametrize("backend_name", ["postgres", "postgres-psycopg"])


def _with(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


async def _server_has_tls(manager: TaskManager) -> bool:
    engine = manager.repository.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        return bool((await conn.execute(text("SHOW ssl"))).scalar() == "on")


async def _runs_a_task(manager: TaskManager) -> bool:
    @manager.task()
    async def ping() -> str:
        return "pong"

    task_id = await manager.enqueue(ping)
    await manager.drain()
    record = await manager.get_task(task_id)
    return record is not None and record.result == "pong"


@DRIVERS
@pytest.mark.parametrize("mode", ["prefer", "allow", "disable"])
async def test_optional_tls_connects_whatever_the_server_offers(
    schema_db_url: str, mode: str
) -> None:
    manager = TaskManager(database_url=_with(schema_db_url, f"sslmode={mode}"))
    await manager.startup()
    try:
        assert await _runs_a_task(manager)
    finally:
        await manager.shutdown()


@DRIVERS
async def test_required_tls_fails_clearly_on_a_server_without_it(schema_db_url: str) -> None:
    probe = TaskManager(database_url=_with(schema_db_url, "sslmode=disable"))
    await probe.startup()
    try:
        tls = await _server_has_tls(probe)
    finally:
        await probe.shutdown()
    manager = TaskManager(database_url=_with(schema_db_url, "sslmode=require"))
    if tls:
        await manager.startup()
        try:
            assert await _runs_a_task(manager)
        finally:
            await manager.shutdown()
        return
    with pytest.raises(ConfigurationError, match="does not offer TLS") as caught:
        await manager.startup()
    assert "sslmode=prefer" in str(caught.value)
    await manager.shutdown()
