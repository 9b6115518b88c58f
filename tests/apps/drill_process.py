"""What the apps of the real-process drills share: their identity, journal and manager.

Each app runs in a uvicorn process of its own and is configured from the
environment (see the apps' module docs for the variables).  The journal is
the ground truth about what ran: a line is appended with ``O_APPEND`` and
``fsync`` before the task goes on, so a line written before a SIGKILL is in
the file afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

from taskflow import TaskManager

PID = os.getpid()
INSTANCE = os.environ.get("TASKFLOW_INSTANCE_NAME") or f"pid{PID}"
JOURNAL_DIR = Path(os.environ.get("JOURNAL_DIR") or ".")
JOURNAL_PATH = JOURNAL_DIR / f"{INSTANCE}-{PID}.journal"


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def manager_from_environment() -> TaskManager:
    """A manager on ``TASKFLOW_DATABASE_URL`` with the drills' short timings."""
    return TaskManager(
        database_url=os.environ["TASKFLOW_DATABASE_URL"],
        lease_seconds=env_float("TASKFLOW_LEASE_SECONDS", 3.0),
        poll_interval=env_float("TASKFLOW_POLL_INTERVAL", 0.2),
        shutdown_grace=env_float("TASKFLOW_SHUTDOWN_GRACE", 10.0),
        acknowledge_timeout=env_float("TASKFLOW_ACKNOWLEDGE_TIMEOUT", 10.0),
    )


def append_line(line: str) -> None:
    """Append ``line`` to this process's journal durably (safe from any thread)."""
    fd = os.open(JOURNAL_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
