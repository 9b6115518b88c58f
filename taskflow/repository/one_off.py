"""``OneOffRecords``: the part of ``TaskRepository`` behind ``schedule_once()``.

A one-off is an ordinary ``pending`` task row with its ``run_at`` and no
owner, which the claims run when due, plus a *run key* naming it: arming a
key again replaces the pending task it names, in the same atomic step, so
instances racing on one key leave exactly one armed.  Run keys are their own
namespace, apart from idempotency keys.  Kept apart from ``base.py`` so that
it stays about tasks in general.
"""

from __future__ import annotations

import abc
from datetime import datetime

from taskflow.models import ScheduledOnce, TaskRecord

#: The ``error`` a one-off's row gets when it is replaced or cancelled.
REPLACED = "replaced: schedule_once() armed its run_key again"
CANCELLED = "cancelled: cancel_scheduled() was called for its run_key"


class OneOffRecords(abc.ABC):
    """Run keys: which pending task each armed one-off is."""

    @abc.abstractmethod
    async def arm_once(self, run_key: str, record: TaskRecord, *, now: datetime) -> str:
        """Insert ``record`` (pending, unowned) under ``run_key``, replacing what the key armed.

        In one atomic step: the task the key named, if still ``pending``, is
        written ``cancelled`` (``REPLACED``; its lease epoch bumped, so an
        instance that claimed it but has not started it cannot), and the key
        then names ``record``.  With an idempotency key on ``record``, the
        key moves from the replaced task to ``record``; if a live task other
        than the replaced one holds it, nothing changes at all and that
        task's id is returned.  Returns ``record``'s id when it was armed.
        """

    @abc.abstractmethod
    async def cancel_once(self, run_key: str, *, now: datetime) -> bool:
        """Cancel the pending task ``run_key`` names and forget the key; whether one was pending."""

    @abc.abstractmethod
    async def list_once(self, *, before: datetime | None = None) -> list[ScheduledOnce]:
        """Armed one-offs whose task is still ``pending`` and unstarted, soonest first.

        ``before``: only those due before that time.
        """
