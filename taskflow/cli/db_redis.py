"""The ``db`` commands on Redis: the keys' data-format version, no Alembic.

A Redis store has no tables to migrate: its keys under the URL's
``key_prefix`` carry one data-format version, which ``upgrade`` writes when
absent (and converts the keys of an older format to) and ``current`` /
``check`` read.  ``downgrade`` and ``rebuild-stats``
have nothing to do there and say so (exit status 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from taskflow.cli.parser import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, fail
from taskflow.exceptions import ConfigurationError

if TYPE_CHECKING:
    from taskflow.repository.redis import RedisTaskRepository

RedisHandler = Callable[[argparse.Namespace, "RedisTaskRepository"], Awaitable[int]]


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


async def redis_upgrade(args: argparse.Namespace, repository: RedisTaskRepository) -> int:
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
            return fail(str(exc), EXIT_FAILURE)
        await _warn_if_not_persisted(repository)
        return EXIT_OK
    # Writes the version only when absent (SET NX), as TaskManager(create_tables=True) does.
    await repository.prepare_schema(migrate=True)
    after = await repository.client.get(key)
    problem = format_problem(repository.keys, after)
    if problem is not None:
        return fail(problem, EXIT_FAILURE)
    if before is None:
        print(f"found no format version; wrote {_describe_format(repository, after)}")
    else:
        print(f"found {_describe_format(repository, before)}: nothing to do")
    await _warn_if_not_persisted(repository)
    return EXIT_OK


async def redis_current(args: argparse.Namespace, repository: RedisTaskRepository) -> int:
    stored = await repository.client.get(repository.keys.format_version)
    print(_describe_format(repository, stored))
    await _warn_if_not_persisted(repository)
    return EXIT_OK


async def redis_check(args: argparse.Namespace, repository: RedisTaskRepository) -> int:
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
        return fail(f"`taskflow db {command}` does not apply to Redis: {reason}", EXIT_USAGE)

    return refuse


REDIS_DOWNGRADE = _not_on_redis(
    "downgrade",
    "there are no migrations to undo (the keys carry one data-format version, written by "
    "`taskflow db upgrade` or create_tables=True); to remove a deployment, delete the keys "
    "under its key prefix",
)
REDIS_REBUILD_STATS = _not_on_redis(
    "rebuild-stats",
    "the statistics are kept by the same script that writes each task, there is no "
    "roll-up table to recompute",
)
