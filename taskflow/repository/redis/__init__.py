"""The Redis adapter: ``TaskRepository`` on a Redis server, every key under one prefix.

Only ``taskflow.repository.factory`` is meant to import this package (as
for the SQL adapter); the key layout is in ``keys``, the stored form of a
task in ``codec``, and the Lua library that keeps the indexes in ``lua``.
"""

from taskflow.repository.redis.repository import RedisTaskRepository

__all__ = ["RedisTaskRepository"]
