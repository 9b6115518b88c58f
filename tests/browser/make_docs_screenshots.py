"""Retake the dashboard screenshots of the documentation (docs/images/dashboard-*.png).

Not a test (pytest does not collect it): run it by hand when the dashboard changes::

    python tests/browser/make_docs_screenshots.py [--out docs/images]

It serves ``tests/apps/docs_demo_app.py`` ("Acme Ops") with uvicorn, twice on
one temporary SQLite file so the Instances tab has two rows, seeds about 80
real tasks through the app, signs in through the login page and drives
Debian's Chromium (``/usr/bin/chromium``) with Playwright, as the browser
tests do.  Every shot is 1400x900.  Console errors and exceptions of the page
are printed at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.processes import free_port  # noqa: E402

ADMIN_PASSWORD = "acme-docs-admin"
VIEWER_PASSWORD = "acme-docs-viewer"
STARTUP_TIMEOUT = 30.0
SETTLE_SECONDS = 6.0  # the seeded short tasks (and their retries) are done by then
TIMEOUT_MS = 15_000


# -- the servers ------------------------------------------------------------------


@contextmanager
def serve(tmp: Path, name: str) -> Iterator[str]:
    """One uvicorn process of the demo app on ``tmp/demo.db``; yields its base URL."""
    port = free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        TASKFLOW_DATABASE_URL=f"sqlite:///{tmp}/demo.db",
        DEMO_ADMIN_PASSWORD=ADMIN_PASSWORD,
        DEMO_VIEWER_PASSWORD=VIEWER_PASSWORD,
    )
    command = [sys.executable, "-m", "uvicorn", "tests.apps.docs_demo_app:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--timeout-graceful-shutdown", "2"]
    log_path = tmp / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process, log_path)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(base: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            httpx.get(f"{base}/tasks/dashboard/static/boot.js", timeout=1)
            return
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the demo app did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.1)


def seed(base: str, part: int) -> None:
    response = httpx.post(f"{base}/demo/seed", params={"part": part}, timeout=60)
    response.raise_for_status()


def backdate(database: Path, hours: float = 5.0) -> None:
    """Spread the finished tasks over the last ``hours``: seeding took seconds, not a day.

    Each finished row's timestamps move back by one random offset, so its
    duration and its order of events are kept; live tasks are left alone.
    """
    rng = random.Random(7)
    columns = ("created_at", "updated_at", "started_at", "finished_at", "run_at")
    with closing(sqlite3.connect(database, timeout=30)) as db, db:
        finished = "status IN ('success', 'failed', 'cancelled')"
        rows = db.execute(f"SELECT id, {', '.join(columns)} FROM taskflow_tasks WHERE {finished}")
        for task_id, *stamps in rows.fetchall():
            offset = timedelta(seconds=rng.uniform(30, hours * 3600))
            moved = [_shift(stamp, offset) for stamp in stamps]
            assignments = ", ".join(f"{column} = ?" for column in columns)
            db.execute(f"UPDATE taskflow_tasks SET {assignments} WHERE id = ?", (*moved, task_id))


def _shift(stamp: str | None, offset: timedelta) -> str | None:
    if stamp is None:
        return None
    # The form taskflow stores on SQLite (UTC, six fraction digits, a "Z").
    return (datetime.fromisoformat(stamp) - offset).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- the browser -------------------------------------------------------------------


class Shooter:
    """Drives one page and saves its screenshots under ``out``."""

    def __init__(self, page: Any, base: str, out: Path) -> None:
        self.page = page
        self.base = base
        self.out = out
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"exception: {error}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def shot(self, name: str) -> None:
        self.page.mouse.move(0, 0)  # no hover effects
        self.page.wait_for_timeout(400)  # let transitions and live updates settle
        path = self.out / f"dashboard-{name}.png"
        self.page.screenshot(path=str(path), animations="disabled", caret="hide")
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    def expect(self) -> Any:
        from playwright.sync_api import expect

        expect.set_options(timeout=TIMEOUT_MS)
        return expect

    def row(self, func: str, status: str) -> Any:
        rows = self.page.locator(f'#task-rows tr[data-status="{status}"]')
        return rows.filter(has=self.page.locator(".func-name", has_text=func)).first

    def open_tab(self, name: str) -> None:
        self.page.locator(f'.tab[data-tab="{name}"]').click()
        self.expect()(self.page.locator(f"#tab-{name}")).to_be_visible()

    def login(self) -> None:
        expect = self.expect()
        self.page.goto(f"{self.base}/tasks/dashboard")
        expect(self.page).to_have_url(f"{self.base}/tasks/auth/login")
        self.page.fill("#username", "admin")
        self.shot("login")
        self.page.fill("#password", ADMIN_PASSWORD)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page).to_have_url(f"{self.base}/tasks/dashboard")
        expect(self.page.locator("#live")).to_have_attribute("data-state", "live")

    def view(self) -> None:
        expect = self.expect()
        expect(self.page.locator("#task-rows tr")).to_have_count(30)
        self.shot("view")

    def detail_panel(self) -> None:
        """A failed email, Error tab: the message and its stack trace."""
        expect = self.expect()
        self.page.locator("#f-status").select_option("failed")
        expect(self.page.locator("#task-table")).to_have_attribute("aria-busy", "false")
        self.row("send_welcome_email", "failed").click()
        panel = self.page.locator("#panel")
        expect(panel).to_be_visible()
        self.page.locator('.ptab[data-ptab="error"]').click()
        expect(panel.locator(".stack")).to_contain_text("Traceback")
        self.shot("detail-panel")

    def retry_and_cancel(self) -> None:
        """A retry and a cancel from the panel, for the Audit tab."""
        expect = self.expect()
        self.page.locator('.ptab[data-ptab="details"]').click()
        self.page.locator('#panel button[data-action="retry"]').click()
        expect(self.page.locator(".toast.success").last).to_contain_text("Retried as")
        self.page.keyboard.press("Escape")
        self.page.locator("#f-status").select_option("")
        expect(self.page.locator("#task-table")).to_have_attribute("aria-busy", "false")
        self.row("sync_crm_contacts", "pending").click()
        self.page.locator('#panel button[data-action="cancel"]').click()
        expect(self.page.locator(".toast.success", has_text="cancelled").last).to_be_visible()
        self.page.keyboard.press("Escape")
        expect(self.page.locator("#panel")).to_be_hidden()
        expect(self.page.locator(".toast")).to_have_count(0)

    def tabs(self) -> None:
        expect = self.expect()
        self.open_tab("dead")
        expect(self.page.locator("#dead-rows tr").first).to_be_visible()
        self.shot("dead-letters")
        self.open_tab("audit")
        expect(self.page.locator("#audit-rows tr", has_text="cancel").first).to_be_visible()
        self.shot("audit")
        self.open_tab("schedules")
        expect(self.page.locator('#schedule-rows tr[data-name="nightly_report"]')).to_be_visible()
        self.shot("schedules")
        self.open_tab("functions")
        expect(self.page.locator(".fn-card h3", has_text="resize_avatar")).to_be_visible()
        self.shot("tasks")
        self.open_tab("instances")
        expect(self.page.locator("#instance-rows tr")).to_have_count(2)
        self.shot("instances")

    def dark(self) -> None:
        expect = self.expect()
        self.open_tab("view")
        self.page.locator("#theme").click()
        expect(self.page.locator("html")).to_have_attribute("data-theme", "dark")
        self.row("generate_invoice_pdf", "success").click()
        expect(self.page.locator("#panel .mini-cards")).to_contain_text("P95")
        self.page.evaluate("window.scrollTo(0, 0)")  # the click scrolled its row into view
        self.shot("dark")


def take_screenshots(base: str, out: Path) -> list[str]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1400, "height": 900},
                locale="en-US",
                color_scheme="light",
            )
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            shooter = Shooter(page, base, out)
            shooter.login()
            shooter.view()
            shooter.detail_panel()
            shooter.retry_and_cancel()
            shooter.tabs()
            shooter.dark()
            return shooter.problems
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not Path(CHROMIUM).is_file():
        sys.exit(f"Chromium is not at {CHROMIUM}: apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="taskflow-docs-") as tmp, ExitStack() as stack:
        # One after the other: the first creates the tables.
        first = stack.enter_context(serve(Path(tmp), "web-1"))
        second = stack.enter_context(serve(Path(tmp), "web-2"))
        seed(first, 1)
        seed(second, 2)
        time.sleep(SETTLE_SECONDS)
        backdate(Path(tmp) / "demo.db")
        problems = take_screenshots(first, args.out.resolve())
    for problem in problems:
        print(f"page problem: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
