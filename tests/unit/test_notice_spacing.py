"""``NoticeSpacing``: one change notice per gap, and the last change of a burst sent late."""

from __future__ import annotations

import asyncio

from taskflow.repository.notices import NoticeSpacing


async def test_a_burst_sends_one_notice_now_and_one_when_the_gap_has_passed() -> None:
    late: list[str] = []

    async def send_late(sender: str) -> None:
        late.append(sender)

    spacing = NoticeSpacing(0.05, send_late)
    assert spacing.sender_now() is None  # not started: nothing to send
    spacing.start("me")
    assert spacing.sender_now() == "me"
    assert spacing.sender_now() is None
    assert spacing.sender_now() is None  # still one owed, not two
    await asyncio.sleep(0.15)
    assert late == ["me"]
    await asyncio.sleep(0.06)
    assert spacing.sender_now() == "me"  # the gap has passed since the late one
    await spacing.stop()


async def test_stop_drops_an_owed_notice() -> None:
    late: list[str] = []

    async def send_late(sender: str) -> None:
        late.append(sender)

    spacing = NoticeSpacing(0.05, send_late)
    spacing.start("me")
    assert spacing.sender_now() == "me"
    assert spacing.sender_now() is None
    await spacing.stop()
    await asyncio.sleep(0.1)
    assert late == []
    assert spacing.sender_now() is None


async def test_a_failing_late_send_is_only_logged() -> None:
    async def send_late(sender: str) -> None:
        raise ConnectionError("gone")

    spacing = NoticeSpacing(0.01, send_late)
    spacing.start("me")
    spacing.sender_now()
    spacing.sender_now()
    await asyncio.sleep(0.05)
    await spacing.stop()
