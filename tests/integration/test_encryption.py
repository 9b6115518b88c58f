"""Encrypted arguments: nothing readable at rest, decrypted only to run, keys rotate."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from taskflow import ConfigurationError, FileLogger, TaskManager, TaskStatus, task_log
from taskflow.db.tables import tasks_table as T

SECRET = "4111-1111-1111-1111"
RECEIVED: list[tuple[Any, ...]] = []


async def charge(card: str, *, amount: int) -> None:
    RECEIVED.append((card, amount))
    task_log("charged")


async def wait_done(manager: TaskManager, task_id: str) -> TaskStatus:
    for _ in range(300):
        record = await manager.get_task(task_id)
        if record is not None and record.status.is_terminal:
            return record.status
        await asyncio.sleep(0.02)
    raise AssertionError("task did not finish")


async def test_no_plaintext_at_rest_and_rotation(
    schema_db_url: str, engine: Any, tmp_path: Path
) -> None:
    RECEIVED.clear()
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    log_path = tmp_path / "tasks.log"
    writer = TaskManager(
        database_url=schema_db_url,
        encrypt_args_key=old_key,
        loggers=[FileLogger(str(log_path), log_lifecycle=True)],
    )
    writer.task(name="charge")(charge)
    await writer.startup()
    try:
        first = await writer.enqueue(charge, SECRET, amount=42)
        assert await wait_done(writer, first) is TaskStatus.SUCCESS
    finally:
        await writer.shutdown()

    # Rows written with the old key, left pending by an instance that died:
    # a new instance holding [new, old] decrypts them with the old key.
    async with engine.begin() as conn:
        await conn.execute(
            T.update()
            .where(T.c.id == first)
            .values(status="pending", owner=None, finished_at=None, lease_expires_at=None)
        )
    rotated = TaskManager(
        database_url=schema_db_url, encrypt_args_key=[new_key, old_key], poll_interval=0.05
    )
    rotated.task(name="charge")(charge)
    await rotated.startup()
    try:
        assert await wait_done(rotated, first) is TaskStatus.SUCCESS
        second = await rotated.enqueue(charge, SECRET, amount=7)
        assert await wait_done(rotated, second) is TaskStatus.SUCCESS
    finally:
        await rotated.shutdown()
    assert RECEIVED == [(SECRET, 42), (SECRET, 42), (SECRET, 7)]

    async with engine.connect() as conn:
        rows = (await conn.execute(select(T))).mappings().all()
        dumped = " ".join(str(dict(row)) for row in rows)
        logs = (await conn.execute(text("SELECT message FROM taskflow_task_logs"))).all()
    # The whole number anywhere; a fragment of it only where text is stored:
    # ids, timestamps, durations and ciphertext hold runs of digits by chance.
    texts = " ".join(
        str(row[column])
        for row in rows
        for column in ("args", "kwargs", "result", "error", "stacktrace", "tags")
    )
    leaked = SECRET in dumped or "4111" in texts
    assert not leaked, dumped
    readable = [row["id"] for row in rows if row["args"] is not None or row["kwargs"] is not None]
    assert readable == []
    formats = {row["payload_format"] for row in rows}
    assert formats == {"fernet"}
    assert logs  # log lines are stored...
    assert SECRET not in log_path.read_text()  # ...and nothing secret reached the file


async def test_a_payload_no_key_can_open_fails_the_task_clearly(
    schema_db_url: str, engine: Any
) -> None:
    stranger = TaskManager(database_url=schema_db_url, encrypt_args_key=Fernet.generate_key())
    stranger.task(name="charge")(charge)
    await stranger.startup()
    try:
        task_id = await stranger.enqueue(charge, SECRET, amount=1)
        await stranger.drain()
    finally:
        await stranger.shutdown()
    async with engine.begin() as conn:
        await conn.execute(T.update().where(T.c.id == task_id).values(status="pending", owner=None))
    other = TaskManager(
        database_url=schema_db_url, encrypt_args_key=Fernet.generate_key(), poll_interval=0.05
    )
    other.task(name="charge")(charge)
    await other.startup()
    try:
        assert await wait_done(other, task_id) is TaskStatus.FAILED
        record = await other.get_task(task_id)
    finally:
        await other.shutdown()
    assert record is not None and "cannot decrypt" in (record.error or "")


def test_bad_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not a valid Fernet key"):
        TaskManager(encrypt_args_key="not-a-key")
