"""What an instance does with tasks it claimed from the database.

A claimed row is either runnable here (its function resolves and its
arguments decode) or it is ended with the reason.  A row that was
``running`` belonged to an instance that died mid-attempt: that attempt
counts, and the task becomes ``interrupted`` unless its function asked to be
run again (``requeue_on_interrupt=True``).
"""

from __future__ import annotations

from taskflow.exceptions import TaskflowError
from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.registry import TaskRegistry
from taskflow.runtime.runner import LocalTask
from taskflow.runtime.transitions import end_record, interrupt, requeue_interrupted
from taskflow.serialization import Cipher, decode_arguments

INTERRUPTED_BY_CRASH = "interrupted: the instance running this task stopped responding"


def adopt(record: TaskRecord, registry: TaskRegistry, cipher: Cipher | None) -> LocalTask | None:
    """A runnable ``LocalTask`` for a claimed row, or None after ending the row (in place)."""
    now = utcnow()
    try:
        target = registry.resolve(record.func_name)
        args, kwargs = decode_arguments(
            record.args if record.args_stored else None,
            record.kwargs if record.args_stored else None,
            record.payload,
            record.payload_format,
            cipher,
        )
    except TaskflowError as exc:
        end_record(record, TaskStatus.FAILED, now, f"{type(exc).__name__}: {exc}")
        return None
    if record.status is TaskStatus.RUNNING:
        if not target.config.requeue_on_interrupt:
            interrupt(record, now, INTERRUPTED_BY_CRASH)
            return None
        requeue_interrupted(record, now, INTERRUPTED_BY_CRASH)
    return LocalTask(record=record, target=target, args=args, kwargs=kwargs)
