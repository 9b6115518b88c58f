"""Spacing out the change notices a repository sends to other instances.

A notice per commit would cost a round trip (or a ``NOTIFY``) per commit
under load, so each instance sends at most one per ``gap``.  Dropping the
ones inside the gap lost the last change of a burst: a task inserted,
started and finished within a quarter of a second announced only its
insert, and another instance's ``wait()`` or dashboard saw the end only at
its next poll.  So a change inside the gap is owed, and one notice is sent
when the gap has passed: the end of every burst is announced, late by at
most ``gap``, and a burst still costs one notice per gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger("taskflow.repository")


class NoticeSpacing:
    """When to send this instance's change notices: now, or once the gap has passed."""

    def __init__(self, gap: float, send_late: Callable[[str], Awaitable[None]]) -> None:
        self._gap = gap
        self._send_late = send_late
        self.sender: str | None = None
        self._last = 0.0
        self._owed: asyncio.TimerHandle | None = None
        self._sending: asyncio.Task[None] | None = None

    def start(self, sender: str) -> None:
        """Send notices as ``sender`` (this instance's id) from now on."""
        self.sender = sender

    async def stop(self) -> None:
        """Send no more notices; a late one owed is dropped."""
        self.sender = None
        owed, self._owed = self._owed, None
        if owed is not None:
            owed.cancel()
        sending, self._sending = self._sending, None
        if sending is not None:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending

    def sender_now(self) -> str | None:
        """The sender to notify as with this write, or None: one went out within the gap.

        In the second case a notice is sent once the gap has passed.
        """
        sender = self.sender
        if sender is None:
            return None
        now = time.monotonic()
        wait = self._last + self._gap - now
        if wait <= 0:
            self._last = now
            if self._owed is not None:
                self._owed.cancel()
                self._owed = None
            return sender
        if self._owed is None:
            self._owed = asyncio.get_running_loop().call_later(wait, self._send_owed)
        return None

    def _send_owed(self) -> None:
        self._owed = None
        sender = self.sender
        if sender is None:
            return
        self._last = time.monotonic()
        self._sending = asyncio.get_running_loop().create_task(self._send(sender))

    async def _send(self, sender: str) -> None:
        try:
            await self._send_late(sender)
        except Exception as exc:  # the writes landed; a notice only saves a poll
            logger.debug("late change notice not sent: %s", exc)
        finally:
            if self._sending is asyncio.current_task():
                self._sending = None
