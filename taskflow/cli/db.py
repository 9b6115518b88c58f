"""``taskflow db upgrade|downgrade|current|check|rebuild-stats``: Alembic on SQL stores.

Each command sets a ``handler``, an async function of the parsed arguments
and an engine, returning the exit status (1 for an out-of-sync database).
On a Redis URL the same commands read and write the data-format version of
the keys instead (their ``redis_handler``, in ``taskflow.cli.db_redis``).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.cli.db_redis import (
    REDIS_DOWNGRADE,
    REDIS_REBUILD_STATS,
    redis_check,
    redis_current,
    redis_upgrade,
)
from taskflow.cli.parser import EXIT_FAILURE, EXIT_OK, Commands, add_url_option
from taskflow.db import migrate

Handler = Callable[[argparse.Namespace, AsyncEngine], Awaitable[int]]


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


def add_db_commands(commands: Commands) -> None:
    """``taskflow db ...``."""
    db = commands.add_parser(
        "db",
        help="create and migrate taskflow's tables (Alembic), or a Redis store's format version",
    )
    actions = db.add_subparsers(dest="action", metavar="ACTION", required=True)

    upgrade = actions.add_parser("upgrade", help="upgrade to a revision (default: head)")
    upgrade.add_argument("revision", nargs="?", default="head", metavar="REV")
    upgrade.set_defaults(handler=_db_upgrade, redis_handler=redis_upgrade)

    downgrade = actions.add_parser("downgrade", help="downgrade to a revision ('base': drop all)")
    downgrade.add_argument("revision", metavar="REV")
    downgrade.set_defaults(handler=_db_downgrade, redis_handler=REDIS_DOWNGRADE)

    current = actions.add_parser("current", help="show the database's revision")
    current.set_defaults(handler=_db_current, redis_handler=redis_current)

    check = actions.add_parser(
        "check", help="compare the database with taskflow's models; exit 1 when they differ"
    )
    check.set_defaults(handler=_db_check, redis_handler=redis_check)

    rebuild = actions.add_parser(
        "rebuild-stats",
        help="recompute the metrics roll-up from the tasks table (after editing history by hand)",
    )
    rebuild.set_defaults(handler=_db_rebuild_stats, redis_handler=REDIS_REBUILD_STATS)

    for action in (upgrade, downgrade, current, check, rebuild):
        add_url_option(action)
