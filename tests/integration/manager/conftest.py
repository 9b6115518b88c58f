"""Fixtures of the TaskManager end-to-end tests: ``harness``; install undone after each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import fastapi.dependencies.utils as fastapi_utils
import pytest
from fastapi import BackgroundTasks

from tests.integration.manager.harness import Harness


@pytest.fixture(autouse=True)
def _install_leaves_other_apps_plain() -> Any:
    """After a manager shut down, an app of its own gets FastAPI's plain BackgroundTasks."""
    yield
    built = fastapi_utils.BackgroundTasks()
    assert type(built) is BackgroundTasks, (
        f"a request outside any taskflow app got {type(built).__name__} after shutdown"
    )


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    built = Harness(database_url)
    try:
        yield built
    finally:
        if built.manager.started:
            await built.manager.shutdown()
        await built.raw.engine.dispose()
