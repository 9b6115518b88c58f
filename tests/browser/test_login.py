"""The dashboard behind a login: sign in, CSRF-protected actions, the viewer role, sign out."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Server, require_playwright
from tests.browser.test_stream import events

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


def test_an_open_stream_ends_soon_after_its_session_is_revoked(auth_server: Server) -> None:
    with httpx.Client(base_url=auth_server.url(""), timeout=15) as client:
        login = client.post(
            "/tasks/auth/login", data={"username": "viewer", "password": "viewer-pass"}
        )
        assert login.status_code == 303
        csrf = client.get("/tasks/auth/session").json()["csrf_token"]
        with client.stream("GET", "/tasks/dashboard/stream") as response:
            assert response.status_code == 200
            stream = events(response.iter_lines())
            assert next(stream)[0] == "snapshot"
            # The same session signs out (another tab, another instance).
            revoked_at = time.monotonic()
            with httpx.Client(base_url=auth_server.url(""), timeout=10) as other:
                other.cookies.update(client.cookies)
                assert (
                    other.post("/tasks/auth/logout", headers={"X-CSRF-Token": csrf}).status_code
                    == 303
                )
            for name, data in stream:
                if name == "bye":
                    assert data == {"reason": "signed-out"}
                    break
            else:
                raise AssertionError("the stream ended without saying why")
            # Within a poll interval (2 s) and some slack, not the 20 s maximum age.
            assert time.monotonic() - revoked_at < 6
        assert client.get("/tasks/dashboard/stream").status_code == 401
