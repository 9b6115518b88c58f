"""Who this process is to the other instances that share the database.

Every row an instance holds names it as ``owner``, and its heartbeat keeps a
row in the instances table alive; the dashboard lists those rows.  An id is
made afresh at each start, so a restarted manager is a new instance to the
others and the rows of its previous life are recovered like anyone's.  It
begins with the host name and pid so that a person reading the dashboard
can tell which process it is.
"""

from __future__ import annotations

import os
import socket
import uuid

from taskflow.models import utcnow
from taskflow.repository.base import InstanceInfo


def new_instance_id() -> str:
    """A fresh id: host name (cut to 40 characters), pid and 8 random hex digits."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def describe_instance(instance_id: str) -> InstanceInfo:
    """What the first heartbeat records about this process, starting now."""
    return InstanceInfo(
        instance_id=instance_id,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        started_at=utcnow(),
        heartbeat_at=utcnow(),
        version=package_version(),
    )


def package_version() -> str | None:
    """The installed taskflow-sql version, or None when it is not installed (a bare checkout)."""
    try:
        from importlib.metadata import version

        return version("taskflow-sql")
    except Exception:
        return None
