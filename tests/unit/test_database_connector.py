"""``DatabaseConnector``: the start goes on without the database, and connects when it answers.

The connection attempt is a plain coroutine here that fails as a driver
does (``ConnectionRefusedError``) until the test lets it succeed; the
integration tests (test_unreachable_start.py) do the same with a real
server behind a cut TCP proxy.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from taskflow.runtime.readiness import DatabaseConnector


class Database:
    """Refuses connections while ``down``; counts attempts and what ran after connecting."""

    def __init__(self, *, down: bool, error: Exception | None = None) -> None:
        self.down = down
        self.error = error or ConnectionRefusedError(111, "Connection refused")
        self.attempts = 0
        self.went_live = 0

    async def connect(self) -> None:
        self.attempts += 1
        await asyncio.sleep(0)
        if self.down:
            raise self.error

    async def go_live(self) -> None:
        self.went_live += 1


def connector_for(db: Database) -> DatabaseConnector:
    return DatabaseConnector(
        db.connect,
        db.go_live,
        is_transient=lambda exc: isinstance(exc, OSError),
        retry_initial=0.02,
        retry_max=0.05,
    )


async def until(probe: object, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not probe():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_reachable_database_is_connected_when_start_returns() -> None:
    db = Database(down=False)
    connector = connector_for(db)
    await connector.start(wait=5)
    assert connector.connected and connector.reason is None
    assert (db.attempts, db.went_live) == (1, 1)
    await connector.stop()


async def test_an_unreachable_database_does_not_stop_the_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="taskflow")
    db = Database(down=True)
    connector = connector_for(db)
    await asyncio.wait_for(connector.start(wait=5), 1)
    assert not connector.connected
    assert connector.reason is not None and "ConnectionRefusedError" in connector.reason
    await until(lambda: db.attempts >= 5)
    assert db.went_live == 0
    db.down = False
    await until(lambda: connector.connected)
    await until(lambda: db.went_live == 1)
    assert connector.reason is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    cannot = [m for m in warnings if "cannot connect to the database" in m]
    assert len(cannot) == 1, warnings  # once, not at every one of the retries
    assert any("reached the database after" in m for m in warnings), warnings
    await connector.stop()
    assert db.went_live == 1


async def test_an_error_that_waiting_cannot_cure_fails_the_start() -> None:
    db = Database(down=True, error=ValueError("the schema is from a newer taskflow"))
    connector = connector_for(db)
    with pytest.raises(ValueError, match="newer taskflow"):
        await connector.start(wait=5)
    assert db.went_live == 0


async def test_after_the_start_every_error_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    db = Database(down=True)
    connector = connector_for(db)
    await connector.start(wait=5)
    db.error = ValueError("the schema is from a newer taskflow")  # e.g. the server came back old
    await until(lambda: connector.reason is not None and "ValueError" in connector.reason)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "taskflow cannot start on the database: ValueError: the schema is from a newer taskflow"
    ]
    seen = db.attempts
    await until(lambda: db.attempts > seen + 1)  # still trying: an upgrade may come
    db.down = False
    await until(lambda: db.went_live == 1)
    await connector.stop()


async def test_stop_ends_the_retries() -> None:
    db = Database(down=True)
    connector = connector_for(db)
    await connector.start(wait=5)
    await asyncio.wait_for(connector.stop(), 1)
    stopped_at = db.attempts
    await asyncio.sleep(0.2)
    assert db.attempts == stopped_at
    assert not connector.connected and db.went_live == 0


async def test_a_first_attempt_that_hangs_is_waited_for_at_most_wait_seconds() -> None:
    release = asyncio.Event()
    went_live: list[bool] = []

    async def hangs() -> None:
        await release.wait()

    async def go_live() -> None:
        went_live.append(True)

    connector = DatabaseConnector(hangs, go_live, is_transient=lambda exc: False)
    await asyncio.wait_for(connector.start(wait=0.1), 1)
    assert not connector.connected and connector.reason == "connecting to the database"
    release.set()
    await until(lambda: bool(went_live))
    assert connector.connected
    await connector.stop()
