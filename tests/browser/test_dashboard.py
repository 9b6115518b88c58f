"""The dashboard in a real browser: live updates, actions, tabs, export and hostile data."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apps.hostile import HOSTILE_HTML, HOSTILE_NAME, HOSTILE_QUOTES, HOSTILE_TITLE
from tests.browser.conftest import Server, require_playwright

Shot = Callable[..., Path]
pytestmark = pytest.mark.browser
expect = require_playwright()


def open_dashboard(page: Any, server: Server) -> None:
    page.goto(server.url("/tasks/dashboard"))
    expect(page.locator("#live")).to_have_attribute("data-state", "live")


def row(page: Any, task_id: str) -> Any:
    return page.locator(f'#task-rows tr[data-id="{task_id}"]')


def open_tab(page: Any, name: str) -> None:
    page.locator(f'.tab[data-tab="{name}"]').click()
    expect(page.locator(f"#tab-{name}")).to_be_visible()


def test_a_task_goes_from_pending_to_success_live(page: Any, server: Server, shot: Shot) -> None:
    open_dashboard(page, server)
    page.evaluate("window.__sameDocument = true")
    task_id = server.run("slow")  # sleeps 0.8 s
    expect(row(page, task_id)).to_have_attribute("data-status", re.compile("pending|running"))
    expect(row(page, task_id)).to_have_attribute("data-status", "success", timeout=8000)
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    expect(page.locator('[data-metric="success"] .value')).to_have_text(re.compile(r"^\d+$"))
    shot(page, "view")


def test_detail_panel_shows_details_logs_and_resizes(page: Any, server: Server, shot: Shot) -> None:
    task_id = server.run("logged")
    server.wait_status(task_id, "success")
    open_dashboard(page, server)
    row(page, task_id).click()
    panel = page.locator("#panel")
    expect(panel).to_be_visible()
    expect(panel.locator(".id-line")).to_contain_text(task_id)
    expect(panel.locator(".badges")).to_contain_text("async")
    expect(panel.locator(".facts")).to_contain_text(re.compile(r"Duration(\d+ ms|<1 ms)"))
    expect(panel.locator(".recent li").first).to_be_visible()  # recent runs of "slow"
    expect(panel.locator(".mini-cards")).to_contain_text("P95")
    shot(page, "detail-panel")
    page.locator('.ptab[data-ptab="logs"]').click()
    expect(page.locator("#log-count")).to_have_text("2")
    expect(panel.locator(".logs")).to_contain_text("starting")
    expect(panel.locator(".log-separator")).to_have_text("finished")
    # Drag the left edge: wider, clamped, remembered; a double-click resets it.
    box = page.locator("#panel-resizer").bounding_box()
    page.mouse.move(box["x"] + 4, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(box["x"] - 300, box["y"] + 200, steps=5)
    page.mouse.up()
    width = page.evaluate("document.getElementById('panel').getBoundingClientRect().width")
    assert 700 <= width <= 900
    assert page.evaluate("localStorage.getItem('tf-panel-width')") == str(round(width))
    page.locator("#panel-resizer").dblclick()
    expect(panel).to_have_js_property("offsetWidth", 440)
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()


def test_retry_a_failed_task_and_cancel_a_pending_one(page: Any, server: Server) -> None:
    task_id = server.run("fails")
    pending_id = server.run("later")  # fails once, then waits ten minutes for its retry
    server.wait_status(task_id, "failed")
    server.wait_status(pending_id, "pending")
    open_dashboard(page, server)
    row(page, task_id).click()
    page.locator('.ptab[data-ptab="error"]').click()
    expect(page.locator("#panel .error-message")).to_contain_text("RuntimeError")
    expect(page.locator("#panel .stack")).to_contain_text("Traceback")
    page.locator('.ptab[data-ptab="details"]').click()
    page.locator('#panel button[data-action="retry"]').click()
    expect(page.locator(".toast.success")).to_contain_text("Retried as")
    retried = page.locator("#task-rows tr", has=page.locator(".pill.retry")).first
    expect(retried).to_have_attribute("data-status", "failed", timeout=8000)

    expect(row(page, pending_id)).to_have_attribute("data-status", "pending")
    row(page, pending_id).click()
    expect(page.locator("#panel .facts")).to_contain_text("Runs at")
    page.locator('#panel button[data-action="cancel"]').click()
    expect(page.locator(".toast.success", has_text="cancelled")).to_be_visible()
    expect(row(page, pending_id)).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#panel .badges")).to_contain_text("cancelled")
    assert server.task(pending_id)["status"] == "cancelled"


def test_dead_letters_replay_selected_and_window(page: Any, server: Server, shot: Shot) -> None:
    first = server.run("fails")
    second = server.run("fails")
    server.wait_status(second, "failed")
    server.wait_status(first, "failed")
    open_dashboard(page, server)
    expect(page.locator("#count-dead")).not_to_have_text("")
    open_tab(page, "dead")
    dead_row = page.locator(f'#dead-rows tr[data-id="{first}"]')
    expect(dead_row).to_be_visible()
    shot(page, "dead-letters")
    dead_row.locator("input[type=checkbox]").check()
    page.locator("#dead-replay").click()
    expect(page.locator(".toast.success").last).to_contain_text("Replayed 1 task")
    page.locator("#dead-window").select_option("1h")
    page.locator("#dead-replay-window").click()
    expect(page.locator("#dialog")).to_be_visible()
    expect(page.locator("#dialog")).to_contain_text("last hour")
    page.keyboard.press("Escape")  # Escape closes the dialog without replaying
    expect(page.locator("#dialog")).to_be_hidden()
    page.locator("#dead-replay-window").click()
    page.locator("#dialog-ok").click()
    expect(page.locator(".toast.success").last).to_contain_text("Replayed")


def test_dead_letters_come_a_page_at_a_time(page: Any, server: Server) -> None:
    last = server.run("fails", count=130)
    server.wait_status(last, "failed")
    failed = httpx.get(server.url("/tasks/metrics"), timeout=10).json()["failed"]
    assert failed >= 130
    open_dashboard(page, server)
    open_tab(page, "dead")
    rows = page.locator("#dead-rows tr")
    expect(rows).to_have_count(100)
    more = page.locator("#dead-more")
    for _ in range(10):
        if more.is_hidden():
            break
        loaded = rows.count()
        more.click()
        expect(rows).not_to_have_count(loaded)
    expect(more).to_be_hidden()
    # Every failed task is listed once, oldest last.
    ids = rows.evaluate_all("rows => rows.map(row => row.dataset.id)")
    assert len(ids) == len(set(ids)) >= failed
    page.locator("#dead-select-all").check()
    expect(page.locator("#dead-replay")).to_have_text(f"Replay selected ({len(ids)})")


def test_audit_schedules_tasks_and_instances_tabs(page: Any, server: Server, shot: Shot) -> None:
    failed = server.run("fails")
    server.wait_status(failed, "failed")
    httpx.post(server.url(f"/tasks/{failed}/retry"), timeout=10)  # something to audit
    open_dashboard(page, server)
    open_tab(page, "audit")
    latest = page.locator("#audit-rows tr").first
    expect(latest).to_contain_text("retry")
    expect(latest.locator("td").first).to_have_text(re.compile(r"\d\d:\d\d:\d\d"))  # local time
    shot(page, "audit")

    open_tab(page, "schedules")
    schedule = page.locator('#schedule-rows tr[data-name="hourly_report"]')
    expect(schedule).to_contain_text("every")
    shot(page, "schedules")
    schedule.get_by_role("button", name="Pause").click()
    expect(schedule).to_contain_text("paused")
    schedule.get_by_role("button", name="Resume").click()
    expect(schedule.get_by_role("button", name="Pause")).to_be_visible()

    open_tab(page, "functions")
    expect(page.locator(".fn-card h3", has_text="later")).to_be_visible()
    later_card = page.locator(".fn-card", has_text="later")
    expect(later_card).to_contain_text("600")
    expect(later_card).to_contain_text("max delay 900s")
    expect(later_card).to_contain_text("retry on RuntimeError")
    never = later_card.locator(".pill", has_text="don't retry on QuotaExceeded")
    expect(never).to_have_attribute("title", "tests.apps.dashboard_app.QuotaExceeded")
    shot(page, "tasks")

    open_tab(page, "instances")
    instance = page.locator("#instance-rows tr").first
    expect(instance).to_contain_text("s ago")
    shot(page, "instances")


def test_pause_holds_updates_back_and_the_theme_is_remembered(
    page: Any, server: Server, shot: Shot
) -> None:
    open_dashboard(page, server)
    page.locator("#pause").click()
    expect(page.locator("#pause")).to_have_text("Resume")
    task_id = server.run("quick")
    expect(page.locator("#buffered")).to_have_text("+1")
    expect(row(page, task_id)).to_have_count(0)
    page.locator("#pause").click()
    expect(row(page, task_id)).to_be_visible()
    expect(page.locator("#buffered")).to_be_hidden()

    theme = page.evaluate("document.documentElement.dataset.theme")
    page.locator("#theme").click()
    flipped = "dark" if theme == "light" else "light"
    expect(page.locator("html")).to_have_attribute("data-theme", flipped)
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", flipped)
    if flipped != "dark":
        page.locator("#theme").click()
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    shot(page, "dark-theme")


def test_pages_of_thirty_with_next_and_previous(page: Any, server: Server) -> None:
    server.run("quick", count=35)
    open_dashboard(page, server)
    page.locator("#f-func").select_option("quick")
    expect(page.locator("#task-table")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#task-rows tr")).to_have_count(30)
    expect(page.locator("#task-rows .func-name", has_text="slow")).to_have_count(0)
    first_page_top = page.locator("#task-rows tr").first.get_attribute("data-id")
    page.locator("#next").click()
    expect(page.locator("#page-label")).to_contain_text("Page 2")
    expect(page.locator("#task-table")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#task-rows tr").first).not_to_have_attribute("data-id", first_page_top)
    page.locator("#prev").click()
    expect(page.locator("#task-rows tr").first).to_have_attribute("data-id", first_page_top)
    assert page.evaluate("localStorage.getItem('tf-func')") == "quick"


def test_csv_export_is_formula_safe(page: Any, server: Server) -> None:
    task_id = server.run("fails")  # its error holds a quoted formula and a newline
    server.wait_status(task_id, "failed")
    open_dashboard(page, server)
    page.locator("#f-func").select_option("fails")
    expect(page.locator("#task-table")).to_have_attribute("aria-busy", "false")
    expect(row(page, task_id)).to_be_visible()
    with page.expect_download() as download_info:
        page.locator("#export").click()
    download = download_info.value
    assert re.fullmatch(r"tasks-\d{4}-\d\d-\d\d\.csv", download.suggested_filename)
    text = Path(download.path()).read_bytes().decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["ID", "Function", "Status", "Duration (ms)", "Retries", "Created", "Error"]
    exported = next(r for r in rows if r[0] == task_id)
    assert exported[2] == "failed"
    assert exported[6] == 'RuntimeError: =HYPERLINK("http://x") second line'
    assert text.count("\r\n") == len(rows)  # newlines inside cells were flattened
    cells = page.evaluate(
        """async (base) => {
            const { csvCell } = await import(base + "/csv.js");
            return ["=1+2", "+1", "-1", "@SUM(A1)", "\\tx", "\\rx", 'say "hi"', "a\\nb", "ok"]
              .map(csvCell);
        }""",
        server.url("/tasks/dashboard/static"),
    )
    assert cells == [
        '"\'=1+2"',
        '"\'+1"',
        '"\'-1"',
        '"\'@SUM(A1)"',
        '"\'\tx"',
        '"\' x"',
        '"say ""hi"""',
        '"a b"',
        '"ok"',
    ]


def test_hostile_values_render_as_text(page: Any, server: Server, shot: Shot) -> None:
    task_id = server.run("hostile")
    server.wait_status(task_id, "failed")
    open_dashboard(page, server)
    expect(page.locator("#title")).to_have_text(HOSTILE_TITLE)
    assert page.title() == HOSTILE_TITLE
    hostile_row = row(page, task_id)
    expect(hostile_row.locator(".func-name")).to_have_text(HOSTILE_NAME)
    expect(hostile_row.locator(".error-cell")).to_have_attribute(
        "title", f"ValueError: {HOSTILE_HTML} {HOSTILE_QUOTES}"
    )
    hostile_row.click()
    panel = page.locator("#panel")
    expect(panel.locator(".tags")).to_contain_text(f"who: {HOSTILE_HTML}")
    expect(panel.locator(".tags")).to_contain_text(f"quote: {HOSTILE_QUOTES}")
    expect(panel.locator(".arg code").first).to_have_text(repr(HOSTILE_HTML))
    expect(panel.locator(".arg", has_text="note")).to_contain_text(repr(HOSTILE_QUOTES))
    page.locator('.ptab[data-ptab="logs"]').click()
    expect(panel.locator(".log-message").nth(0)).to_have_text(HOSTILE_HTML)
    expect(panel.locator(".log-message").nth(1)).to_have_text(HOSTILE_QUOTES)
    page.locator('.ptab[data-ptab="error"]').click()
    expect(panel.locator(".error-message")).to_contain_text(HOSTILE_QUOTES)
    open_tab(page, "functions")
    expect(page.locator(".fn-card h3", has_text="evil")).to_have_text(HOSTILE_NAME)
    open_tab(page, "dead")
    expect(page.locator(f'#dead-rows tr[data-id="{task_id}"]')).to_contain_text(HOSTILE_NAME)
    # Nothing ran and nothing was parsed as markup.
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img, #panel img, main script, #panel script").count() == 0


def test_dashboard_headers_and_config_cannot_break_out(server: Server) -> None:
    response = httpx.get(server.url("/tasks/dashboard"), timeout=10)
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"]
    html = response.text
    config = re.search(r'<script type="application/json" id="tf-config">(.*?)</script>', html, re.S)
    assert config is not None
    assert "<" not in config.group(1) and ">" not in config.group(1)
    assert html.count("</script>") == 3  # boot.js, the config block, dashboard.js
    assert "<script>" not in html  # every script is a file (or the inert JSON block)
    assert not re.search(r"\sstyle\s*=", html)
    assert not re.search(r"\son[a-z]+\s*=", html, re.I)
    assert HOSTILE_TITLE not in html  # only in escaped forms
    static = httpx.get(server.url("/tasks/dashboard/static/dashboard.js"), timeout=10)
    assert static.status_code == 200
    assert static.headers["content-type"].startswith("text/javascript")
    assert static.headers["cache-control"] == "no-cache"
    versioned = re.search(r'src="([^"]+dashboard\.js\?v=\w+)"', html)
    assert versioned is not None
    immutable = httpx.get(server.url(versioned.group(1)), timeout=10)
    assert "immutable" in immutable.headers["cache-control"]
    for bad in ("../admin.py", "nope.js", "dashboard.py"):
        assert (
            httpx.get(server.url(f"/tasks/dashboard/static/{bad}"), timeout=10).status_code == 404
        )
