"""The ``taskflow`` command line: ``taskflow db upgrade|downgrade|current|check|rebuild-stats``.

Each command group adds itself to the top-level parser (see ``_GROUPS``) and
sets a ``handler``: an async function of the parsed arguments and an engine,
returning the exit status.  Errors are one line on stderr, never a traceback:
2 for a bad invocation or configuration, 1 for a failure or an out-of-sync
database.

On a Redis URL the ``db`` commands read and write the data-format version
of the keys under the URL's ``key_prefix`` instead of running Alembic (each
``db`` command also sets a ``redis_handler``, an async function of the
arguments and the repository the factory builds); ``downgrade`` and
``rebuild-stats`` have nothing to do there and say so.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.db import migrate
from taskflow.db.engine import create_engine_for
from taskflow.exceptions import ConfigurationError, TaskflowError
from taskflow.settings import ENV_DATABASE_URL, DatabaseTarget, resolve_database_url

if TYPE_CHECKING:
    from taskflow.repository.redis import RedisTaskRepository

Handler = Callable[[argparse.Namespace, AsyncEngine], Awaitable[int]]
RedisHandler = Callable[[argparse.Namespace, "RedisTaskRepository"], Awaitable[int]]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _add_url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        metavar="URL",
        help=f"database URL, e.g. postgresql://user@host/db (default: ${ENV_DATABASE_URL})",
    )


def _describe_revision(revision: str | None, head: str | None) -> str:
    if revision is None:
        return "base (no taskflow migration applied)"
    return f"{revision} (head)" if revision == head else f"{revision} (head is {head})"


async def _db_upgrade(args: argparse.Namespace, engine: AsyncEngine) -> int:
    before = await migrate.current(engine)
    await migrate.upgrade(engine, args.revision)
    after = await migrate.current(engine)
    head = migrate.head_revision()
    print(f"upgraded from {before or 'base'} to {_describe_revision(after, head)}")
    return EXIT_OK


async def _db_downgrade(args: argparse.Namespace, engine: AsyncEngine) -> int:
    before = await migrate.current(engine)
    await migrate.downgrade(engine, args.revision)
    after = await migrate.current(engine)
    print(f"downgraded from {before or 'base'} to {after or 'base'}")
    return EXIT_OK


async def _db_current(args: argparse.Namespace, engine: AsyncEngine) -> int:
    print(_describe_revision(await migrate.current(engine), migrate.head_revision()))
    return EXIT_OK


async def _db_check(args: argparse.Namespace, engine: AsyncEngine) -> int:
    differences = await migrate.check(engine)
    revision, head = await migrate.current(engine), migrate.head_revision()
    if not differences:
        print(f"in sync: the database matches taskflow's models (revision {revision})")
        return EXIT_OK
    print(f"{len(differences)} difference(s) between taskflow's models and the database:")
    for difference in differences:
        print(f"  {difference}")
    if revision != head:
        print(f"the database is at {revision or 'base'}, head is {head}: run `taskflow db upgrade`")
    return EXIT_FAILURE


async def _db_rebuild_stats(args: argparse.Namespace, engine: AsyncEngine) -> int:
    # Imported here: the other db commands must work without the repository layer.
    from taskflow.db.engine import WRITE_OPTION
    from taskflow.repository.sql.stats import rebuild_stats

    counted = await rebuild_stats(engine.execution_options(**{WRITE_OPTION: True}))
    print(f"rebuilt task statistics from {counted} finished task(s)")
    return EXIT_OK


# -- the db commands on Redis: the keys' data-format version, no Alembic ------------------


def _describe_format(repository: RedisTaskRepository, stored: bytes | str | None) -> str:
    from taskflow.repository.redis.repository import FORMAT_VERSION

    where = f"under key prefix {repository.keys.prefix!r}"
    if stored is None:
        return f"none (no format version {where})"
    try:
        version = int(stored)
    except ValueError:
        return f"{stored!r} (not a format version) {where}"
    if version == FORMAT_VERSION:
        state = "current"
    elif version > FORMAT_VERSION:
        state = f"newer than this taskflow's {FORMAT_VERSION}"
    else:
        state = f"older than this taskflow's {FORMAT_VERSION}"
    return f"format {version} ({state}) {where}"


async def _warn_if_not_persisted(repository: RedisTaskRepository) -> None:
    from taskflow.repository.redis.repository import persistence_warning

    warning = await persistence_warning(repository.client, repository.keys)
    if warning is not None:
        print(f"taskflow: warning: {warning}", file=sys.stderr)


async def _redis_upgrade(args: argparse.Namespace, repository: RedisTaskRepository) -> int:
    from taskflow.models import utcnow
    from taskflow.repository.redis.repository import (
        FORMAT_VERSION,
        format_problem,
        stored_version,
    )
    from taskflow.repository.redis.upgrade import upgrade_format

    key = repository.keys.format_version
    before = await repository.client.get(key)
    version = stored_version(before)
    if version is not None and version < FORMAT_VERSION:
        try:
            print(await upgrade_format(repository, now=utcnow()))
        except ConfigurationError as exc:
            return _fail(str(exc), EXIT_FAILURE)
        await _warn_if_not_persisted(repository)
        return EXIT_OK
    # Writes the version only when absent (SET NX), as TaskManager(create_tables=True) does.
    await repository.prepare_schema(migrate=True)
    after = await repository.client.get(key)
    problem = format_problem(repository.keys, after)
    if problem is not None:
        return _fail(problem, EXIT_FAILURE)
    if before is None:
        print(f"found no format version; wrote {_describe_format(repository, after)}")
    else:
        print(f"found {_describe_format(repository, before)}: nothing to do")
    await _warn_if_not_persisted(repository)
    return EXIT_OK


async def _redis_current(args: argparse.Namespace, repository: RedisTaskRepository) -> int:
    stored = await repository.client.get(repository.keys.format_version)
    print(_describe_format(repository, stored))
    await _warn_if_not_persisted(repository)
    return EXIT_OK


async def _redis_check(args: argparse.Namespace, repository: RedisTaskRepository) -> int:
    from taskflow.repository.redis.repository import format_problem

    stored = await repository.client.get(repository.keys.format_version)
    problem = format_problem(repository.keys, stored)
    await _warn_if_not_persisted(repository)
    if problem is None:
        print(f"in sync: {_describe_format(repository, stored)}")
        return EXIT_OK
    print(problem)
    if stored is None:
        print("run `taskflow db upgrade` to write it")
    return EXIT_FAILURE


def _not_on_redis(command: str, reason: str) -> RedisHandler:
    async def refuse(args: argparse.Namespace, repository: RedisTaskRepository) -> int:
        return _fail(f"`taskflow db {command}` does not apply to Redis: {reason}", EXIT_USAGE)

    return refuse


_REDIS_DOWNGRADE = _not_on_redis(
    "downgrade",
    "there are no migrations to undo (the keys carry one data-format version, written by "
    "`taskflow db upgrade` or create_tables=True); to remove a deployment, delete the keys "
    "under its key prefix",
)
_REDIS_REBUILD_STATS = _not_on_redis(
    "rebuild-stats",
    "the statistics are kept by the same script that writes each task, there is no "
    "roll-up table to recompute",
)


def _add_db_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser(
        "db",
        help="create and migrate taskflow's tables (Alembic), or a Redis store's format version",
    )
    actions = db.add_subparsers(dest="action", metavar="ACTION", required=True)

    upgrade = actions.add_parser("upgrade", help="upgrade to a revision (default: head)")
    upgrade.add_argument("revision", nargs="?", default="head", metavar="REV")
    upgrade.set_defaults(handler=_db_upgrade, redis_handler=_redis_upgrade)

    downgrade = actions.add_parser("downgrade", help="downgrade to a revision ('base': drop all)")
    downgrade.add_argument("revision", metavar="REV")
    downgrade.set_defaults(handler=_db_downgrade, redis_handler=_REDIS_DOWNGRADE)

    current = actions.add_parser("current", help="show the database's revision")
    current.set_defaults(handler=_db_current, redis_handler=_redis_current)

    check = actions.add_parser(
        "check", help="compare the database with taskflow's models; exit 1 when they differ"
    )
    check.set_defaults(handler=_db_check, redis_handler=_redis_check)

    rebuild = actions.add_parser(
        "rebuild-stats",
        help="recompute the metrics roll-up from the tasks table (after editing history by hand)",
    )
    rebuild.set_defaults(handler=_db_rebuild_stats, redis_handler=_REDIS_REBUILD_STATS)

    for action in (upgrade, downgrade, current, check, rebuild):
        _add_url_option(action)


# Later groups (`tasks`, `report`) add themselves here.
_GROUPS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _add_db_commands,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``taskflow`` argument parser with every command group."""
    parser = argparse.ArgumentParser(
        prog="taskflow", description="taskflow: durable FastAPI background tasks."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_group in _GROUPS:
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


async def _run(handler: Handler, args: argparse.Namespace, target: DatabaseTarget) -> int:
    engine = create_engine_for(target)
    try:
        return await handler(args, engine)
    finally:
        await engine.dispose()


def _one_line(exc: BaseException) -> str:
    # DBAPI errors carry the driver's message in .orig; SQLAlchemy appends a
    # "background on this error" link on later lines.
    source = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(source).strip().splitlines()
    return lines[0] if lines else type(source).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``taskflow`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        target = resolve_database_url(_database_url(args))
    except (ConfigurationError, ImportError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    if target.backend == "redis":
        return _main_redis(args, target)
    try:
        return asyncio.run(_run(handler, args, target))
    except (SQLAlchemyError, OSError) as exc:
        return _fail(f"{target.render()}: {_one_line(exc)}", EXIT_FAILURE)
    except (TaskflowError, CommandError) as exc:
        return _fail(_one_line(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        return 130


def _main_redis(args: argparse.Namespace, target: DatabaseTarget) -> int:
    """Run the command's Redis variant on the repository the factory builds for ``target``."""
    from redis.exceptions import RedisError

    handler: RedisHandler | None = getattr(args, "redis_handler", None)
    if handler is None:
        command = " ".join(part for part in (args.command, getattr(args, "action", None)) if part)
        return _fail(f"`taskflow {command}` does not apply to Redis", EXIT_USAGE)
    try:
        return asyncio.run(_run_redis(handler, args, target))
    except ConfigurationError as exc:
        return _fail(_one_line(exc), EXIT_USAGE)
    except (RedisError, OSError) as exc:
        return _fail(f"{target.render()}: {_one_line(exc)}", EXIT_FAILURE)
    except TaskflowError as exc:
        return _fail(_one_line(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        return 130


async def _run_redis(
    handler: RedisHandler, args: argparse.Namespace, target: DatabaseTarget
) -> int:
    # Through the factory, as TaskManager builds it: the same URL options, the same checks.
    from taskflow.repository.factory import create_repository
    from taskflow.repository.redis import RedisTaskRepository

    repository = create_repository(target, connections=1)
    assert isinstance(repository, RedisTaskRepository)
    try:
        await repository.open()
        return await handler(args, repository)
    finally:
        await repository.close()


def _fail(message: str, status: int) -> int:
    print(f"taskflow: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
