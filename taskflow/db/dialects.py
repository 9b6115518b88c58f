"""Every difference between SQL dialects, named for what it means.

The repository asks these questions instead of testing dialect names itself,
so adding a dialect means reading one file.
"""

from __future__ import annotations

from sqlalchemy.engine import Dialect


def is_postgresql(dialect: Dialect) -> bool:
    return dialect.name == "postgresql"


def is_mysql(dialect: Dialect) -> bool:
    return dialect.name in ("mysql", "mariadb")


def is_sqlite(dialect: Dialect) -> bool:
    return dialect.name == "sqlite"


def reports_executemany_rowcount(dialect: Dialect) -> bool:
    """Whether an executemany UPDATE reports the total of matched rows.

    When it does, a total equal to the batch size proves every guarded
    update applied and no read-back is needed.
    """
    return bool(dialect.supports_sane_multi_rowcount)


def supports_skip_locked(dialect: Dialect) -> bool:
    """``SELECT ... FOR UPDATE SKIP LOCKED``: PostgreSQL 9.5+, MySQL 8+, MariaDB 10.6+."""
    if is_postgresql(dialect):
        return True
    if is_mysql(dialect):
        version = dialect.server_version_info or ()
        if getattr(dialect, "is_mariadb", False):
            return tuple(version[:2]) >= (10, 6)
        return tuple(version[:1]) >= (8,)
    return False


def supports_update_returning(dialect: Dialect) -> bool:
    """``UPDATE ... RETURNING``: PostgreSQL and SQLite 3.35+, not MySQL/MariaDB."""
    return bool(dialect.update_returning)
