"""Helpers shared by the tests that start real uvicorn processes.

* ``free_port()``: a port for an instance to listen on.
* ``start_uvicorn()`` / ``UvicornInstance``: one ``python -m uvicorn`` process
  serving an app of ``tests/apps``, with its output in a log file; ``close()``
  always stops it (SIGTERM, then SIGKILL).
* ``sql_rows()``: read a database with plain SQL, no taskflow code involved.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class UvicornInstance:
    """One uvicorn process serving an app; ``close()`` stops it whatever its state."""

    name: str
    process: subprocess.Popen[bytes]
    base: str
    log_path: Path
    log: IO[bytes]
    stopped_in: float | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def post(self, route: str, **params: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.base}{route}", params=params, timeout=10)
        assert response.status_code == 200, (response.status_code, response.text)
        body: dict[str, Any] = response.json()
        return body

    def task(self, task_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.base}/tasks/{task_id}", timeout=10)
        assert response.status_code == 200, (response.status_code, response.text)
        body: dict[str, Any] = response.json()
        return body

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT, path: str = "/tasks/metrics") -> None:
        """Wait until the instance answers HTTP; fail the test (with its log) if it does not."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(f"{self.base}{path}", timeout=1)
                return
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"instance {self.name} did not start:\n{self.log_text()}")
                time.sleep(0.05)

    def signal_and_wait(self, sig: int, timeout: float) -> bool:
        """Send ``sig`` and wait up to ``timeout`` s; True if the process exited in time."""
        started = time.monotonic()
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        self.stopped_in = time.monotonic() - started
        return True

    def kill(self) -> None:
        """SIGKILL, and wait for the process to be gone."""
        self.process.kill()
        self.process.wait(timeout=10)

    def close(self) -> None:
        """Stop the process whatever its state (SIGTERM, then SIGKILL) and close its log."""
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.kill()
        finally:
            self.log.close()


def start_uvicorn(
    app: str, name: str, env: dict[str, str], workdir: Path, *, wait: bool = True
) -> UvicornInstance:
    """``python -m uvicorn <app>`` on a free port, in ``workdir``, logging to ``workdir``.

    ``env`` is added to this process's environment (with this checkout on
    ``PYTHONPATH``).  The caller owns the instance and must ``close()`` it.
    """
    port = free_port()
    full_env = dict(os.environ, PYTHONPATH=str(ROOT))
    full_env.update(env)
    log_path = workdir / f"uvicorn-{name}.log"
    log = log_path.open("wb")
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    except BaseException:
        log.close()
        raise
    instance = UvicornInstance(name, process, f"http://127.0.0.1:{port}", log_path, log)
    if wait:
        try:
            instance.wait_ready()
        except BaseException:
            instance.close()
            raise
    return instance


def sql_rows(url: str, query: str) -> list[dict[str, Any]]:
    """Run a parameterless query with plain SQL (no taskflow code involved).

    Blocking, with an event loop of its own for PostgreSQL: from async code,
    call it through ``asyncio.to_thread``.
    """
    if url.startswith("postgresql://"):
        import asyncpg

        async def fetch() -> list[dict[str, Any]]:
            conn = await asyncpg.connect(url)
            try:
                return [dict(r) for r in await conn.fetch(query)]
            finally:
                await conn.close()

        return asyncio.run(fetch())
    engine = create_engine(url.replace("mysql://", "mysql+pymysql://", 1))
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(text(query)).mappings()]
    finally:
        engine.dispose()


def stored_utc(value: Any) -> datetime | None:
    """A timestamp column as a raw driver returns it, as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite stores text
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime), value
    if value.tzinfo is None:  # SQLite and MySQL store naive UTC
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


@contextmanager
def closed_at_exit() -> Iterator[list[UvicornInstance]]:
    """A list to put started instances in; every one is closed when the block ends."""
    started: list[UvicornInstance] = []
    try:
        yield started
    finally:
        for instance in started:
            instance.close()
