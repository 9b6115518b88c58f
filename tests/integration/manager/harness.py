"""The app harness of the TaskManager end-to-end tests and its plain-SQL view of the tables."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from taskflow import TaskAdmin, TaskManager
from taskflow.settings import resolve_database_url
from tests.polling import eventually


def from_json(value: Any) -> Any:
    """A JSON column as read by a raw driver (text on most of them)."""
    if isinstance(value, (str, bytes)):
        return json.loads(value)
    return value


class RawDB:
    """Plain SQL over a fresh connection per query: what another process would see."""

    def __init__(self, url: str) -> None:
        self.engine = create_async_engine(resolve_database_url(url).url, poolclass=NullPool)

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            result = await conn.execute(text(sql), params)
            return [dict(row._mapping) for row in result]

    async def task(self, task_id: str) -> dict[str, Any] | None:
        found = await self.rows("SELECT * FROM taskflow_tasks WHERE id = :id", id=task_id)
        return found[0] if found else None

    async def task_where(
        self, task_id: str, check: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            row = await self.task(task_id)
            return row if row is not None and check(row) else None

        return await eventually(probe)

    async def logs(self, task_id: str) -> list[dict[str, Any]]:
        return await self.rows(
            "SELECT attempt, level, message, extra FROM taskflow_task_logs"
            " WHERE task_id = :id ORDER BY id",
            id=task_id,
        )

    async def count(self, where: str = "1 = 1", **params: Any) -> int:
        found = await self.rows(f"SELECT COUNT(*) AS n FROM taskflow_tasks WHERE {where}", **params)
        return int(found[0]["n"])


class Harness:
    """One app, one manager, one raw connection factory."""

    def __init__(self, url: str, *, auto_install: bool = True, lifespan: Any = None) -> None:
        self.url = url
        self.manager = TaskManager(database_url=url, shutdown_grace=5.0)
        self.app = FastAPI(lifespan=lifespan) if lifespan is not None else FastAPI()
        TaskAdmin(self.app, self.manager, auto_install=auto_install)
        self.raw = RawDB(url)

    @contextlib.asynccontextmanager
    async def serve(self, *, raise_app_exceptions: bool = True) -> AsyncIterator[httpx.AsyncClient]:
        """Run the app's lifespan around an in-process client; drain before shutdown."""
        async with self.app.router.lifespan_context(self.app):
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=raise_app_exceptions)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client
                await self.manager.drain()

    async def api_task(self, client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
        response = await client.get(f"/tasks/{task_id}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data
