"""Fixtures of the browser tests: a real uvicorn server, Debian's Chromium, Playwright.

The app is ``tests/apps/dashboard_app.py`` on a SQLite file, and the tests
that use ``server`` run a second time with the app on Redis.  Chromium is the
system one (``apt-get install -y chromium``), never a downloaded build.  When
Playwright or ``/usr/bin/chromium`` is missing the tests skip, saying how to
install them; under ``CI=true`` they fail instead.  Test modules get
Playwright's ``expect`` from :func:`require_playwright`, so that a missing
Playwright skips them instead of breaking collection.

Every page records console errors, uncaught exceptions and Content Security
Policy violations; a test fails if any happened.  Screenshots go to
``tests/browser/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import (
    REDIS_DEFAULT_URL,
    REDIS_ENV_VAR,
    in_ci,
    require_server,
    server_available,
)
from tests.processes import free_port
from tests.stores import delete_redis_prefix

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
STARTUP_TIMEOUT = 30.0


def _skip_or_fail(reason: str) -> NoReturn:
    """Skip on a laptop; under ``CI=true`` a missing browser is a failure."""
    if in_ci():
        pytest.fail(f"browser tests cannot run under CI=true: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_playwright() -> Any:
    """Playwright's ``expect``, for the test modules to import (skips them when missing)."""
    try:
        from playwright.sync_api import expect
    except ImportError:
        _skip_or_fail('Playwright is not installed: pip install -e ".[dev]"')
    expect.set_options(timeout=10_000)
    return expect


def _require_chromium() -> None:
    if not Path(CHROMIUM).is_file():
        _skip_or_fail(
            f"Chromium is not at {CHROMIUM}: apt-get install -y chromium "
            "(or point TASKFLOW_TEST_CHROMIUM at a Chromium binary)"
        )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the browser tests last, whatever the order (pytest-randomly included).

    While sync Playwright runs, its event loop is the thread's running loop:
    asyncio tests scheduled in between could not start theirs.
    """
    here = Path(__file__).resolve().parent
    browser = [item for item in items if here in item.path.resolve().parents]
    if browser:
        items[:] = [item for item in items if item not in browser] + browser


# -- the server -------------------------------------------------------------------


@dataclass
class Server:
    """One uvicorn process serving the dashboard test app."""

    base: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def url(self, route: str) -> str:
        return f"{self.base}{route}"

    def run(self, kind: str, count: int = 1) -> str:
        """Enqueue a task of ``kind`` (see the app) and return its id."""
        response = httpx.post(self.url(f"/run/{kind}"), params={"count": count}, timeout=10)
        assert response.status_code == 200, response.text
        task_id: str = response.json()["task_id"]
        return task_id

    def task(self, task_id: str, cookies: dict[str, str] | None = None) -> dict[str, Any]:
        response = httpx.get(self.url(f"/tasks/{task_id}"), cookies=cookies, timeout=10)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_status(self, task_id: str, *statuses: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            task = self.task(task_id)
            if task["status"] in statuses or time.monotonic() > deadline:
                assert task["status"] in statuses, task
                return task
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _launch(tmp: Path, name: str, **env: str) -> Server:
    """Start the app in a process; ``_wait_ready`` waits for it (both boot meanwhile)."""
    port = free_port()
    log_path = tmp / f"{name}.log"
    environment = dict(
        os.environ, PYTHONPATH=str(ROOT), TASKFLOW_DATABASE_URL=f"sqlite:///{tmp}/{name}.db"
    )
    environment.update(env)
    command = [sys.executable, "-m", "uvicorn", "tests.apps.dashboard_app:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--timeout-graceful-shutdown", "3"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    return Server(f"http://127.0.0.1:{port}", process, log_path)


def _wait_ready(server: Server) -> Server:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            httpx.get(server.url("/tasks/dashboard/static/boot.js"), timeout=1)
            return server
        except httpx.TransportError:
            if server.process.poll() is not None or time.monotonic() > deadline:
                _stop(server.process)
                pytest.fail(f"the dashboard app did not start:\n{server.log_text()}")
            time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def _servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """The apps, started together (and while Chromium starts) to save time."""
    servers = {
        "open": _launch(tmp_path_factory.mktemp("dashboard"), "open"),
        "auth": _launch(tmp_path_factory.mktemp("dashboard-auth"), "auth", DASHBOARD_AUTH="1"),
    }
    prefix = f"tfb{uuid.uuid4().hex[:12]}"
    redis_url = os.environ.get(REDIS_ENV_VAR) or REDIS_DEFAULT_URL
    if server_available("redis"):
        servers["redis"] = _launch(
            tmp_path_factory.mktemp("dashboard-redis"),
            "redis",
            TASKFLOW_DATABASE_URL=f"{redis_url}?key_prefix={prefix}",
        )
    yield servers
    for started in servers.values():
        _stop(started.process)
    if "redis" in servers:
        delete_redis_prefix(redis_url, prefix)


@pytest.fixture(scope="session", params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def server(request: pytest.FixtureRequest, _servers: dict[str, Server], browser: Any) -> Server:
    """The app without login, on SQLite and then on Redis."""
    if request.param == "redis":
        require_server("redis")  # skips (fails under CI=true) when Redis is down
        return _wait_ready(_servers["redis"])
    return _wait_ready(_servers["open"])


@pytest.fixture(scope="session")
def auth_server(_servers: dict[str, Server], browser: Any) -> Server:
    """The app with login: admin/admin-pass and viewer/viewer-pass (read-only)."""
    return _wait_ready(_servers["auth"])


# -- the browser --------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    require_playwright()
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# Recorded before any page script runs; the page's own CSP does not apply to it.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@dataclass
class PageProblems:
    """What went wrong in the page: console errors, exceptions, CSP violations."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def unexpected(self) -> list[str]:
        found = self.console + self.errors
        return [line for line in found if not any(ok in line for ok in self.allowed)]


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page; fails the test on console errors or CSP violations."""
    context = browser.new_context(
        viewport={"width": 1400, "height": 900}, accept_downloads=True, locale="en-US"
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    context.add_init_script(RECORD_VIOLATIONS)
    new_page = context.new_page()
    new_page.set_default_timeout(10_000)
    problems = PageProblems()
    new_page.on(
        "console",
        lambda message: problems.console.append(message.text) if message.type == "error" else None,
    )
    new_page.on("pageerror", lambda error: problems.errors.append(str(error)))
    new_page.problems = problems
    try:
        yield new_page
        violations = new_page.evaluate("window.__cspViolations || []")
        assert violations == [], f"Content Security Policy violations: {violations}"
        assert problems.unexpected() == [], f"errors in the page: {problems.unexpected()}"
    finally:
        context.close()


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Callable[..., Path]:
    """Save a screenshot as tests/browser/artifacts/<name>.png (redis-<name>.png on Redis)."""
    ARTIFACTS.mkdir(exist_ok=True)
    callspec = getattr(request.node, "callspec", None)
    on_redis = callspec is not None and callspec.params.get("server") == "redis"

    def take(page: Any, name: str, *, full_page: bool = False) -> Path:
        path = ARTIFACTS / f"{'redis-' if on_redis else ''}{name}.png"
        page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        return path

    return take
