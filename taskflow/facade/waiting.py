"""``wait()`` and ``wait_sync()``: one task's finished record, for scripts, workflows and tests.

Tasks run after the response whatever the caller does; these methods only
let code that needs a task's outcome (a script, one step of a workflow, a
test) have it without a poll loop of its own.  A route that waits for its
own task holds the request open for the task's whole run, which is what
background tasks exist to avoid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from taskflow.exceptions import NotStartedError
from taskflow.facade.parts import ManagerParts
from taskflow.facade.store import call_blocking
from taskflow.models import TaskRecord
from taskflow.runtime.waiting import wait_for_finish

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

_NOT_STARTED = (
    "task_manager.wait() reads the database through the running manager: start it "
    "first (TaskAdmin or task_manager.init_app(app), then run the app; in tests, "
    "`with TestClient(app) as client:`)"
)


class WaitMethods(ManagerParts):
    """Waiting for a task's terminal status, on this instance or any other."""

    async def wait(self, task_id: str, timeout: float | None = None) -> TaskRecord:
        """Wait until the task is over and return its record (status, ``result``, ``error``).

        Over means success, failed, cancelled or interrupted; a task that
        will be retried is not over yet.  The wait is woken by the same
        change notices as the dashboard (this instance's commits at once;
        other instances' through PostgreSQL or Redis notifications) and
        re-reads the row every ``poll_interval`` in case a notice is lost.
        Tasks run in the background whether or not anyone waits: this is for
        scripts, workflows and tests, not for holding a request open.

        Raises:
            TaskNotFoundError: no task has that id.
            TimeoutError: not over within ``timeout`` seconds (the task goes on).
            NotStartedError: the manager is not started, or shut down meanwhile.
        """
        manager = cast("TaskManager", self)
        if not self._started:
            raise NotStartedError(_NOT_STARTED)
        return await wait_for_finish(
            task_id,
            read=manager.get_task,
            feed=self.changes,
            timeout=timeout,
            poll_interval=self.poll_interval,
        )

    def wait_sync(self, task_id: str, timeout: float | None = None) -> TaskRecord:
        """``wait()`` for sync code: a sync route, a script's thread, a sync test.

        Runs the wait on the manager's event loop and blocks this thread
        until it ends.

        Raises:
            BlockingCallError: called on a thread that runs an event loop (an
                ``async def`` route): ``await task_manager.wait(task_id)`` there.
            TaskNotFoundError, TimeoutError, NotStartedError: as ``wait()``.
        """
        return call_blocking(
            cast("TaskManager", self),
            "wait_sync",
            "wait(task_id)",
            lambda: self.wait(task_id, timeout),
            timeout=None,  # the wait keeps its own time
        )
