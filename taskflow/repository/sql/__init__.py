"""The SQL adapter: ``TaskRepository`` on SQLite, PostgreSQL and MySQL/MariaDB.

Only ``taskflow.repository.factory`` imports this package; the tables it
reads and writes are declared in ``taskflow.db``.
"""

from taskflow.repository.sql.repository import SqlTaskRepository

__all__ = ["SqlTaskRepository"]
