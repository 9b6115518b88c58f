"""Wake-ups between instances on Redis pub/sub: new unowned work, and task changes.

Polling alone finds new work and changed tasks, but only at the next poll;
a message on the deployment's channel lets a waiting dispatcher claim at
once and a live dashboard re-read at once.  A lost message costs only that
delay, so fire-and-forget pub/sub is enough.  Change notices carry the
sender's instance id, so an instance ignores its own, and are sent at most
every ``CHANGE_NOTICE_GAP`` seconds per instance (``repository/notices.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from taskflow.repository.notices import NoticeSpacing
from taskflow.repository.redis.keys import KeySpace

logger = logging.getLogger("taskflow.repository")

CHANGE_NOTICE_GAP = 0.25
# After the subscription's connection broke: wait this long before subscribing again.
RESUBSCRIBE_DELAY = 1.0


class _Subscription:
    """One channel read in a task of its own, calling back on each message."""

    def __init__(
        self, client: aioredis.Redis, channel: str, on_message: Callable[[bytes], None]
    ) -> None:
        self._client = client
        self._channel = channel
        self._on_message = on_message
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Subscribed before returning: a notice sent right after is not missed.
        await self._pubsub.subscribe(self._channel)
        self._task = asyncio.create_task(self._read(), name=f"taskflow-redis-{self._channel}")

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=30.0)
            except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
                # redis-py subscribes again when it reconnects, at the next read.
                logger.debug("Redis subscription to %s broke: %s", self._channel, exc)
                await asyncio.sleep(RESUBSCRIBE_DELAY)
                continue
            if message is not None and message.get("type") == "message":
                data = message.get("data")
                self._on_message(data if isinstance(data, bytes) else b"")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(redis_errors.RedisError, OSError):
            await self._pubsub.aclose()


class RedisWakeups:
    """``listen``, ``announce_work``, ``listen_changes`` and the change notices of writes."""

    client: aioredis.Redis
    keys: KeySpace

    def _init_wakeups(self) -> None:
        self._subscriptions: list[_Subscription] = []
        self._notices = NoticeSpacing(CHANGE_NOTICE_GAP, self._publish_change)

    async def _subscribe(self, channel: str, on_message: Callable[[bytes], None]) -> _Subscription:
        subscription = _Subscription(self.client, channel, on_message)
        await subscription.start()
        self._subscriptions.append(subscription)
        return subscription

    async def _unsubscribe(self, subscription: _Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
        await subscription.stop()

    async def _stop_wakeups(self) -> None:
        """Stop every subscription (at ``close()``)."""
        await self._notices.stop()
        for subscription in list(self._subscriptions):
            await self._unsubscribe(subscription)

    async def listen(self, on_wake: Callable[[], None]) -> Callable[[], Awaitable[None]] | None:
        subscription = await self._subscribe(self.keys.wake_channel, lambda _: on_wake())

        async def stop() -> None:
            await self._unsubscribe(subscription)

        return stop

    async def announce_work(self) -> None:
        await self.client.publish(self.keys.wake_channel, b"work")

    async def listen_changes(
        self, instance_id: str, on_change: Callable[[], None]
    ) -> Callable[[], Awaitable[None]] | None:
        own = instance_id.encode("utf-8")

        def received(sender: bytes) -> None:
            if sender != own:
                on_change()

        self._notices.start(instance_id)
        subscription = await self._subscribe(self.keys.changes_channel, received)

        async def stop() -> None:
            await self._notices.stop()
            await self._unsubscribe(subscription)

        return stop

    async def _notice_changes(self) -> None:
        """After a write: tell other instances, at most every gap (the last change late)."""
        sender = self._notices.sender_now()
        if sender is None:
            return
        try:
            await self._publish_change(sender)
        except redis_errors.RedisError as exc:  # the write landed; the notice is optional
            logger.debug("change notice not sent: %s", exc)

    async def _publish_change(self, sender: str) -> None:
        await self.client.publish(self.keys.changes_channel, sender.encode("utf-8"))
