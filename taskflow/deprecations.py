"""fastapi-taskflow options that taskflow accepts and no longer needs.

Code written for fastapi-taskflow passes them, so they are still accepted:
refusing them would break the one-line switch of import.  Each one passed
warns once per call, with the reason it does nothing here, so the caller can
delete it knowingly instead of believing it still tunes something.
"""

from __future__ import annotations

import warnings

# Option name -> why taskflow does not need it.
REASONS = {
    "snapshot_interval": (
        "every task state change is written to the database when it happens, "
        "so there is no snapshot to take"
    ),
    "merged_list_ttl": (
        "task lists are read from the database every instance shares, "
        "so there is no merged list to cache"
    ),
    "requeue_pending": (
        "pending tasks are always run again after a restart or a crash; "
        "for tasks that were running, requeue_on_interrupt=True on the task decides"
    ),
    "persist": "every task is a database row from the moment add_task() returns",
    "ttl": (
        "finished tasks are deleted by TaskManager(retention_days=...), "
        "which keeps the statistics right as they go"
    ),
}


def warn_unneeded(given: dict[str, object], *, stacklevel: int) -> None:
    """Warn once for each option in ``given`` that is not None.

    ``stacklevel`` counts from the caller of this function, as ``warnings.warn``
    counts from its own caller: 2 points at whoever called the caller.
    """
    for name, value in given.items():
        if value is not None:
            warnings.warn(
                f"{name} is deprecated and has no effect in taskflow: {REASONS[name]}. "
                f"Remove {name}={value!r}.",
                DeprecationWarning,
                stacklevel=stacklevel + 1,
            )
