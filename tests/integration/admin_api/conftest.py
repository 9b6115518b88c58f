"""The ``admin`` fixture: a started app with the admin API, its jobs and a raw-SQL engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from taskflow import TaskAdmin, TaskManager
from taskflow.settings import resolve_database_url
from tests.integration.admin_api.admin_app import Admin, register_jobs


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[Admin]:
    manager = TaskManager(database_url=database_url, shutdown_grace=5.0)
    app = FastAPI()
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    failing: set[str] = set()
    gate = asyncio.Event()
    jobs = register_jobs(manager, calls, failing, gate)
    TaskAdmin(app, manager)
    raw = create_async_engine(resolve_database_url(database_url).url, poolclass=NullPool)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                built = Admin(manager, client, raw, jobs, calls, failing, gate)
                try:
                    yield built
                finally:
                    gate.set()
                    await manager.drain()
    finally:
        await raw.dispose()
