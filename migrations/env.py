"""Alembic environment for taskflow's tables.

Two ways in:

* from code (``taskflow.db.migrate``, ``taskflow db ...``): a sync ``Connection``
  arrives in ``config.attributes["connection"]``, typically from inside
  ``AsyncConnection.run_sync``; migrations run on it, in the caller's transaction;
* from the ``alembic`` command line: the URL comes from ``-x url=...``, then
  ``TASKFLOW_DATABASE_URL``, then ``sqlalchemy.url`` in ``alembic.ini``; any form
  (``postgresql://``, ``mysql://``, ``sqlite:///tasks.db``...) is resolved to the
  async driver taskflow uses, and migrations run through ``run_sync``.

Only ``taskflow_*`` tables are considered, and the version table is
``taskflow_alembic_version``: the database may hold the user's own tables and
Alembic history.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from taskflow.db.engine import create_engine_for
from taskflow.db.migrate import context_options, run_exclusive
from taskflow.exceptions import TaskflowError
from taskflow.settings import ENV_DATABASE_URL, DatabaseTarget, resolve_database_url

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _target() -> DatabaseTarget:
    raw = (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get(ENV_DATABASE_URL)
        or config.get_main_option("sqlalchemy.url")
    )
    if not raw:
        raise CommandError(
            "no database URL: pass `alembic -x url=postgresql://user@host/db ...`, "
            f"set {ENV_DATABASE_URL}, or set sqlalchemy.url in alembic.ini"
        )
    try:
        return resolve_database_url(raw)
    except TaskflowError as exc:  # the alembic command prints a CommandError on one line
        raise CommandError(str(exc)) from exc


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **context_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit the SQL script (``alembic upgrade head --sql``) instead of running it."""
    target = _target()
    context.configure(
        url=target.url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **context_options(target.url.get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_new_engine() -> None:
    engine = create_engine_for(_target())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_exclusive, _run)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    """Run on the connection handed over by code, else on a new engine for the URL."""
    connection = config.attributes.get("connection")
    if connection is None:
        asyncio.run(_run_on_new_engine())
    elif isinstance(connection, Connection):
        _run(connection)
    else:
        raise CommandError(
            'config.attributes["connection"] must be a sync Connection, '
            f"got {type(connection).__name__}: call Alembic inside AsyncConnection.run_sync"
        )


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
