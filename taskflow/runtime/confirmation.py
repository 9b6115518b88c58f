"""``await enqueue()``: wait for the task's commit, but never longer than ``acknowledge_timeout``.

An unbounded wait made a graceful stop hang for a whole outage: the server
waits for the request to end before it runs the app's shutdown, and the
request waited for a commit that could not come.  So the wait is the one a
response gets (``acknowledgement.wait_committed``), with the same outcome:
a task that is not confirmed in time is withdrawn (it never runs), and the
caller gets an error instead of an id.
"""

from __future__ import annotations

from taskflow.exceptions import CommitTimeoutError, TaskArgumentError, WriterStoppedError
from taskflow.runtime.acknowledgement import Forget, wait_committed
from taskflow.runtime.runner import LocalTask
from taskflow.runtime.writer import GroupCommitWriter


async def confirm_enqueued(
    local: LocalTask, writer: GroupCommitWriter, timeout: float, forget: Forget
) -> None:
    """Return once ``local``'s row is committed; raise (the task withdrawn) when it is not.

    Raises:
        CommitTimeoutError: not committed within ``timeout`` seconds.
        WriterStoppedError: taskflow stopped before the row was committed.
        TaskArgumentError: the database refused the row for its content.
    """
    refusal = await wait_committed([local], writer, timeout, forget)
    if refusal is None:
        return
    commit = local.inserted
    if (
        commit is not None
        and commit.done()
        and not commit.cancelled()
        and isinstance(commit.exception(), WriterStoppedError)
    ):
        raise WriterStoppedError(refusal.detail)
    if refusal.status_code == 503:
        raise CommitTimeoutError(refusal.detail)
    raise TaskArgumentError(refusal.detail)
