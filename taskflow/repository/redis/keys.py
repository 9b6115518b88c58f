"""Where each piece of a deployment's state lives in Redis: one ``KeySpace`` per key prefix.

Every key of one deployment starts with ``{prefix}:`` in braces, Redis
Cluster's hash tag, so that all of them hash to one slot and a Lua script may
touch any of them atomically, on a single server and on a cluster alike.
Several apps share one Redis by using different prefixes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from taskflow.exceptions import ConfigurationError

DEFAULT_PREFIX = "taskflow"
_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def check_prefix(prefix: str) -> str:
    """The prefix, or a ``ConfigurationError`` that says what a prefix may hold."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ConfigurationError(
            f"key_prefix must be 1 to 64 letters, digits, '_', '.', ':' or '-', got {prefix!r}"
        )
    return prefix


@dataclass(frozen=True)
class KeySpace:
    """The names of one deployment's keys.

    Per task: ``task(id)`` (a hash of the record's fields, under the short
    names of ``fields.py``) and ``logs(id)`` (a list).  Indexes, all sorted
    sets of task ids unless said otherwise: ``created`` (score: created_at
    in microseconds, for the newest-first list and its cursor),
    ``by_status(s)``, ``by_func(name)``, ``by_source(s)`` (sources other
    than the default ``manual`` only); the claim queue, which holds the pending tasks that
    have no owner, per executor (``"-"`` for none) so that a claim for one
    kind never walks past another kind's backlog: ``queue_level(e, p)`` per
    priority (score: run_at), ``queue(e)`` the priorities present (member
    ``str(priority)`` or ``"none"``, score the priority or -inf), so a claim
    walks the levels highest first, and ``queue_executors`` the executors
    that have queued tasks; ``leases`` (score: lease_expires_at of pending and
    running tasks that have an owner and a lease), ``owned(instance)`` (a
    set: ids of the active tasks an instance owns); ``idempotency`` (a
    hash: key -> id of the task holding it; as in SQL, a key stays with its
    task unless that task failed or was deleted).  ``key("logids", id)``
    holds the ids of a task's log lines, so a batch applied twice does not
    repeat them.  The Lua library (``lua.py``) builds these same names.
    """

    prefix: str = DEFAULT_PREFIX

    def key(self, *parts: str) -> str:
        """Any key of this deployment: the hash-tagged prefix, then ``parts`` joined by ':'."""
        return ":".join((f"{{{self.prefix}}}", *parts))

    def task(self, task_id: str) -> str:
        return self.key("task", task_id)

    def logs(self, task_id: str) -> str:
        return self.key("logs", task_id)

    @property
    def created(self) -> str:
        return self.key("index", "created")

    def by_status(self, status: str) -> str:
        return self.key("index", "status", status)

    def by_func(self, func_name: str) -> str:
        return self.key("index", "func", func_name)

    def by_source(self, source: str) -> str:
        return self.key("index", "source", source)

    @property
    def queue_executors(self) -> str:
        return self.key("queue-executors")

    def queue(self, executor: str) -> str:
        return self.key("queue", executor)

    def queue_level(self, executor: str, level: str) -> str:
        """One executor's unowned pending tasks of one priority (``str(p)`` or ``"none"``)."""
        return self.key("queue", executor, level)

    @property
    def leases(self) -> str:
        return self.key("leases")

    def owned(self, instance_id: str) -> str:
        return self.key("owned", instance_id)

    @property
    def idempotency(self) -> str:
        return self.key("idempotency")

    @property
    def run_keys(self) -> str:
        """A hash: ``schedule_once()`` run key -> the task it armed last."""
        return self.key("runkeys")

    @property
    def wake_channel(self) -> str:
        return self.key("wake")

    @property
    def changes_channel(self) -> str:
        return self.key("changes")

    @property
    def format_version(self) -> str:
        """A string: the data-format version this deployment's keys follow."""
        return self.key("format")
