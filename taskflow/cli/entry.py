"""``taskflow``'s top-level parser and ``main``: pick the command, open the store, map errors.

Each command group adds itself to the parser (``GROUPS``) and sets one of
two kinds of handler on its commands:

* ``store_handler``: an async function of the parsed arguments and the
  ``TaskRepository`` the factory builds for the URL, as a running app builds
  it.  ``tasks``, ``report`` and ``schedules`` use it, so they work on every
  backend through the one interface.
* ``handler`` (an ``AsyncEngine``) and ``redis_handler`` (the Redis
  repository): the ``db`` commands, which manage a store's schema rather
  than its tasks.

Errors are one line on stderr, never a traceback: 2 for a bad invocation or
configuration, 1 for a failure (an unknown task, a server that is away).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from taskflow.cli.db import Handler, add_db_commands
from taskflow.cli.db_redis import RedisHandler
from taskflow.cli.parser import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Commands,
    OneLineParser,
    UsageError,
    fail,
)
from taskflow.cli.report import add_report_command
from taskflow.cli.schedules import add_schedule_commands
from taskflow.cli.tasks import add_task_commands
from taskflow.db.engine import create_engine_for
from taskflow.exceptions import ConfigurationError, TaskflowError
from taskflow.settings import ENV_DATABASE_URL, DatabaseTarget, resolve_database_url

if TYPE_CHECKING:
    from taskflow.repository.base import TaskRepository

StoreHandler = Callable[[argparse.Namespace, "TaskRepository"], Awaitable[int]]

GROUPS: tuple[Callable[[Commands], None], ...] = (
    add_task_commands,
    add_report_command,
    add_schedule_commands,
    add_db_commands,
)


def _version() -> str:
    from taskflow import __version__

    return f"taskflow {__version__}"


def build_parser() -> argparse.ArgumentParser:
    """The ``taskflow`` argument parser with every command group."""
    parser: argparse.ArgumentParser = OneLineParser(
        prog="taskflow",
        description="taskflow: durable FastAPI background tasks, from the command line.",
        epilog=f"Every command takes --url URL, or reads ${ENV_DATABASE_URL}.",
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_group in GROUPS:
        add_group(commands)
    return parser


def _database_url(args: argparse.Namespace) -> str:
    url: str | None = getattr(args, "url", None) or os.environ.get(ENV_DATABASE_URL)
    if not url:
        raise ConfigurationError(
            f"no database URL: pass --url URL (e.g. --url postgresql://user@host/db) "
            f"or set {ENV_DATABASE_URL}"
        )
    return url


def _one_line(exc: BaseException) -> str:
    # DBAPI errors carry the driver's message in .orig; SQLAlchemy appends a
    # "background on this error" link on later lines.
    source = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(source).strip().splitlines()
    return lines[0] if lines else type(source).__name__


def _connection_errors(target: DatabaseTarget) -> tuple[type[BaseException], ...]:
    """What a store that is away or refuses a statement raises: exit status 1."""
    errors: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError)
    if target.backend == "redis":
        from redis.exceptions import RedisError

        errors += (RedisError,)
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``taskflow`` command; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a bad invocation (one line printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        target = resolve_database_url(_database_url(args))
    except (ConfigurationError, ImportError) as exc:
        return fail(str(exc), EXIT_USAGE)
    try:
        return asyncio.run(_dispatch(args, target))
    except UsageError as exc:
        return fail(_one_line(exc), EXIT_USAGE)
    except ConfigurationError as exc:
        return fail(_one_line(exc), _configuration_status(args, target))
    except _connection_errors(target) as exc:
        return fail(f"{target.render()}: {_one_line(exc)}", EXIT_FAILURE)
    except (TaskflowError, CommandError) as exc:
        return fail(_one_line(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _configuration_status(args: argparse.Namespace, target: DatabaseTarget) -> int:
    # Alembic on SQL reports a schema it cannot handle as a failure (1), as it always has.
    sql_db_command = getattr(args, "store_handler", None) is None and target.backend != "redis"
    return EXIT_FAILURE if sql_db_command else EXIT_USAGE


async def _dispatch(args: argparse.Namespace, target: DatabaseTarget) -> int:
    store_handler: StoreHandler | None = getattr(args, "store_handler", None)
    if store_handler is not None:
        return await _run_store(store_handler, args, target)
    if target.backend == "redis":
        redis_handler: RedisHandler | None = getattr(args, "redis_handler", None)
        if redis_handler is None:
            command = " ".join(p for p in (args.command, getattr(args, "action", None)) if p)
            raise UsageError(f"`taskflow {command}` does not apply to Redis")
        return await _run_redis(redis_handler, args, target)
    handler: Handler = args.handler
    engine = create_engine_for(target)
    try:
        return await handler(args, engine)
    finally:
        await engine.dispose()


async def _run_store(
    handler: StoreHandler, args: argparse.Namespace, target: DatabaseTarget, connections: int = 2
) -> int:
    # Through the factory, as TaskManager builds it: the same URL options, the same checks.
    from taskflow.repository.factory import create_repository

    repository = create_repository(target, connections=connections)
    try:
        await repository.open()
        return await handler(args, repository)
    finally:
        await repository.close()


async def _run_redis(
    handler: RedisHandler, args: argparse.Namespace, target: DatabaseTarget
) -> int:
    from taskflow.repository.redis import RedisTaskRepository

    async def on_redis(args: argparse.Namespace, repository: TaskRepository) -> int:
        assert isinstance(repository, RedisTaskRepository)
        return await handler(args, repository)

    return await _run_store(on_redis, args, target, connections=1)
