"""``LuaScript``: a Lua script defined once at module level, run on any client by its SHA1.

The read, schedule, retry and retention scripts are constants of their
modules, not state of one repository object: several repositories (several
app instances in one process, the test suite's pairs) share them.  redis-py's
``register_script`` binds a script to one client; this binds it to none, and
loads it into whichever server answers NOSCRIPT (after a restart or a
``SCRIPT FLUSH``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from taskflow.repository.redis.connection import RedisClient


class LuaScript:
    """One script's text and SHA1; calling it runs EVALSHA, loading the text when missing."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    async def __call__(
        self, client: RedisClient, *, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)
