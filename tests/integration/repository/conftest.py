"""The ``repo`` fixture: one ``SqlTaskRepository`` on the leak-checked engine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.repository.sql import SqlTaskRepository


@pytest.fixture
async def repo(engine: AsyncEngine) -> AsyncIterator[SqlTaskRepository]:
    repository = SqlTaskRepository(engine)
    yield repository
    # Not repository.close(): it disposes the fixture's engine, which would empty the pool
    # before the fixture's leak check (and dispose it twice).
    await repository.release()
