"""The dashboard behind a login: sign in, CSRF-protected actions, the viewer role, sign out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Server, require_playwright

Shot = Callable[..., Path]
pytestmark = pytest.mark.browser
expect = require_playwright()


def sign_in(page: Any, server: Server, username: str, password: str) -> None:
    page.goto(server.url("/tasks/dashboard"))
    expect(page).to_have_url(server.url("/tasks/auth/login"))
    page.fill("#username", username)
    page.fill("#password", password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(server.url("/tasks/dashboard"))
    expect(page.locator("#live")).to_have_attribute("data-state", "live")


def test_admin_signs_in_acts_with_csrf_and_signs_out(
    page: Any, auth_server: Server, shot: Shot
) -> None:
    page.goto(auth_server.url("/tasks/dashboard"))
    expect(page.locator("#username")).to_be_visible()
    shot(page, "login")
    failed = auth_server.run("fails")
    sign_in(page, auth_server, "admin", "admin-pass")
    expect(page.locator("#user")).to_have_text("admin · admin")
    expect(page.locator("#logout")).to_be_visible()
    row = page.locator(f'#task-rows tr[data-id="{failed}"]')
    expect(row).to_have_attribute("data-status", "failed")
    row.click()
    page.locator('#panel button[data-action="retry"]').click()  # sends X-CSRF-Token
    expect(page.locator(".toast.success")).to_contain_text("Retried as")
    page.keyboard.press("Escape")
    page.locator("#clear-history").click()
    page.locator("#dialog-ok").click()  # DELETE with the token too
    expect(page.locator(".toast.success").last).to_contain_text("Deleted")
    page.locator("#logout").click()
    expect(page).to_have_url(auth_server.url("/tasks/auth/login"))
    page.goto(auth_server.url("/tasks/dashboard"))
    expect(page).to_have_url(auth_server.url("/tasks/auth/login"))


def test_viewer_sees_no_controls(page: Any, auth_server: Server) -> None:
    failed = auth_server.run("fails")
    sign_in(page, auth_server, "viewer", "viewer-pass")
    expect(page.locator("#user")).to_have_text("viewer · viewer")
    expect(page.locator("#clear-history")).to_be_hidden()
    row = page.locator(f'#task-rows tr[data-id="{failed}"]')
    expect(row).to_have_attribute("data-status", "failed")
    expect(row.locator(".check input")).to_be_hidden()
    row.click()
    expect(page.locator("#panel .badges")).to_contain_text("failed")
    expect(page.locator('#panel button[data-action="retry"]')).to_have_count(0)


def test_stream_and_page_need_a_login(auth_server: Server) -> None:
    stream = httpx.get(auth_server.url("/tasks/dashboard/stream"), timeout=10)
    assert stream.status_code == 401
    page = httpx.get(auth_server.url("/tasks/dashboard"), timeout=10)
    assert page.status_code == 303
    assert page.headers["location"].endswith("/tasks/auth/login")
