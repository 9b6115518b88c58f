"""Fixtures of the Redis end-to-end tests: ``deployment``; the task functions' records reset."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.conftest import require_server
from tests.integration.redis.redis_app import (
    Deployment,
    clear_records,
)


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    clear_records()


@pytest.fixture
async def deployment() -> AsyncIterator[Deployment]:
    built = Deployment(require_server("redis"))
    try:
        yield built
    finally:
        try:
            for manager in built.managers:
                if manager.started:
                    await asyncio.wait_for(manager.shutdown(), 30)
        finally:
            built.delete_keys()
