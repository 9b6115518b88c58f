"""The one place that turns a configured store into a ``TaskRepository``.

Everything else (the manager, the runtime, the web layer) holds the
interface of ``taskflow.repository.base`` only; the backend packages under
``taskflow.repository`` are imported here and nowhere else.  A new backend
adds its package and one branch below.
"""

from __future__ import annotations

from taskflow.db.engine import create_engine_for
from taskflow.repository.base import TaskRepository
from taskflow.repository.sql import SqlTaskRepository
from taskflow.settings import DatabaseTarget


def create_repository(target: DatabaseTarget, *, connections: int | None = None) -> TaskRepository:
    """The repository for ``target``, not opened yet.

    Args:
        target: the resolved database URL (``taskflow.settings.resolve_database_url``).
        connections: at most this many connections at once; default: the
            backend's own pool size.  The blocking bridge needs two at most.
    """
    if target.backend == "redis":
        from taskflow.repository.redis import RedisTaskRepository  # needs the redis extra

        return RedisTaskRepository(
            target.url.render_as_string(hide_password=False),
            key_prefix=target.key_prefix,
            max_connections=connections,
        )
    # SQLite, PostgreSQL and MySQL/MariaDB.
    if connections is None:
        return SqlTaskRepository(create_engine_for(target))
    engine = create_engine_for(target, pool_size=1, max_overflow=max(connections - 1, 0))
    return SqlTaskRepository(engine)
