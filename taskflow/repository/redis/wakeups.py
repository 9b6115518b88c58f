"""Wake-ups between instances on Redis pub/sub: new unowned work, and task changes.

Polling alone finds new work and changed tasks, but only at the next poll;
a message on the deployment's channel lets a waiting dispatcher claim at
once and a live dashboard re-read at once.  A lost message costs only that
delay, so fire-and-forget pub/sub is enough.  Change notices carry the
sender's instance id, so an instance ignores its own, and are sent at most
every ``CHANGE_NOTICE_GAP`` seconds per instance (``repository/notices.py``).

On a Redis Cluster the channels are shard channels (``SPUBLISH`` and
``SSUBSCRIBE``): they carry the deployment's hash tag, so a message stays on
the shard that owns the deployment's slot instead of being broadcast to
every node.  The subscription is a connection of its own to that primary;
when the slot moves (a failover, a resharding) the node ends it or answers
``MOVED``, and it is made again to the slot's new owner.  Where shard
channels cannot be read (redis-py before 8 has no asyncio ``SSUBSCRIBE``;
Redis before 7.0 or an ACL user may refuse it), instances still send the
messages but find new work and changes by polling alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from taskflow.repository.notices import NoticeSpacing
from taskflow.repository.redis.connection import RedisClient, node_client, slot_owner
from taskflow.repository.redis.keys import KeySpace

logger = logging.getLogger("taskflow.repository")

CHANGE_NOTICE_GAP = 0.25
# After the subscription's connection broke: wait this long before subscribing again.
RESUBSCRIBE_DELAY = 1.0
# A cluster node's answer to SSUBSCRIBE: waited for this long at most.
SUBSCRIBE_TIMEOUT = 5.0
# A subscription that must be made again, after a pause.
# A subscription that cannot be read now but may be later.  On a cluster
# that includes the errors of a slot on the move: redirections that run out
# (ClusterError, "TTL exhausted"), TRYAGAIN and CLUSTERDOWN, which are also
# ResponseErrors and must not be taken for a refusal.
_BROKEN = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.RedisClusterException,
    redis_errors.ClusterError,
    redis_errors.TryAgainError,
    OSError,
)


class _Subscription:
    """One channel read in a task of its own, calling back on each message."""

    def __init__(
        self, client: RedisClient, channel: str, on_message: Callable[[bytes], None]
    ) -> None:
        self._client = client
        self._channel = channel
        self._on_message = on_message
        self._pubsub: PubSub | None = None
        self._node: aioredis.Redis | None = None  # on a cluster: the slot owner's connection
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Subscribed before returning: a notice sent right after is not missed.
        try:
            await self._connect()
        except BaseException:
            await self._disconnect()
            raise
        self._task = asyncio.create_task(self._read(), name=f"taskflow-redis-{self._channel}")

    async def _connect(self) -> PubSub:
        if isinstance(self._client, RedisCluster):
            # A keyed command first: the cluster client follows a MOVED for the
            # slot and notes its new owner, which slot_owner then answers.
            await self._client.exists(self._channel)
            self._node = node_client(await slot_owner(self._client, self._channel))
            # Subscribe messages are kept: a node's sunsubscribe says the slot moved.
            self._pubsub = self._node.pubsub(ignore_subscribe_messages=False)
            await self._pubsub.ssubscribe(self._channel)
            # The confirmation, or the node's refusal (no SSUBSCRIBE before Redis 7.0,
            # an ACL user without the channel) raised here rather than in the reader.
            await self._pubsub.get_message(timeout=SUBSCRIBE_TIMEOUT)
        else:
            self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            await self._pubsub.subscribe(self._channel)
        return self._pubsub

    async def _disconnect(self) -> None:
        pubsub, node, self._pubsub, self._node = self._pubsub, self._node, None, None
        with contextlib.suppress(redis_errors.RedisError, OSError):
            if pubsub is not None:
                await pubsub.aclose()
            if node is not None:
                await node.aclose()

    async def _read(self) -> None:
        while True:
            try:
                pubsub = self._pubsub or await self._connect()
                message = await pubsub.get_message(timeout=30.0)
            except redis_errors.MovedError:  # the slot has left the node: follow it at once
                logger.debug("Redis shard channel %s moved; subscribing again", self._channel)
                await self._disconnect()
                continue
            except _BROKEN as exc:
                # One server: redis-py subscribes again when it reconnects, at the next
                # read.  A cluster: connect again to whichever node owns the slot then.
                logger.debug("Redis subscription to %s broke: %s", self._channel, exc)
                if isinstance(self._client, RedisCluster):
                    await self._disconnect()
                await asyncio.sleep(RESUBSCRIBE_DELAY)
                continue
            except redis_errors.ResponseError as exc:  # refused when subscribing again
                logger.warning("Redis refused the subscription to %s: %s", self._channel, exc)
                await self._disconnect()
                return  # polling alone finds new work and changes from now on
            if message is None:
                continue
            kind = message.get("type")
            if kind in ("message", "smessage"):
                data = message.get("data")
                self._on_message(data if isinstance(data, bytes) else b"")
            elif kind == "sunsubscribe":  # the slot left this node: follow it
                logger.debug("Redis shard channel %s moved; subscribing again", self._channel)
                await self._disconnect()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # A reader that died of a Redis error must not fail the shutdown:
            # the subscription only ever saved polling time.
            with contextlib.suppress(asyncio.CancelledError, redis_errors.RedisError, OSError):
                await task
        await self._disconnect()


class RedisWakeups:
    """``listen``, ``announce_work``, ``listen_changes`` and the change notices of writes."""

    client: RedisClient
    keys: KeySpace

    def _init_wakeups(self) -> None:
        self._subscriptions: list[_Subscription] = []
        self._notices = NoticeSpacing(CHANGE_NOTICE_GAP, self._publish_change)
        self._polling_reason: str | None = None

    def _can_subscribe(self) -> bool:
        """False on a cluster when redis-py's asyncio client has no SSUBSCRIBE (before 8.0)."""
        if self._polling_reason is not None:
            return False
        if not isinstance(self.client, RedisCluster) or hasattr(PubSub, "ssubscribe"):
            return True
        self._poll_instead("this redis-py cannot read shard channels (redis-py 8 can)")
        return False

    def _poll_instead(self, reason: str) -> None:
        self._polling_reason = reason
        logger.warning(
            "Redis Cluster wake-ups are off, %s: instances find new work and changes by polling",
            reason,
        )

    async def _subscribe(
        self, channel: str, on_message: Callable[[bytes], None]
    ) -> _Subscription | None:
        """A running subscription; None on a cluster that refuses ``SSUBSCRIBE``."""
        subscription = _Subscription(self.client, channel, on_message)
        try:
            await subscription.start()
        except redis_errors.ResponseError as exc:
            if not isinstance(self.client, RedisCluster):
                raise
            # Redis before 7.0 has no shard channels; an ACL user may lack channel rights.
            self._poll_instead(f"the cluster refuses SSUBSCRIBE ({exc})")
            return None
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
        if not self._can_subscribe():
            return None
        subscription = await self._subscribe(self.keys.wake_channel, lambda _: on_wake())
        if subscription is None:
            return None

        async def stop() -> None:
            await self._unsubscribe(subscription)

        return stop

    async def announce_work(self) -> None:
        await self._publish(self.keys.wake_channel, b"work")

    async def _publish(self, channel: str, message: bytes) -> None:
        if isinstance(self.client, RedisCluster):
            # Routed by the channel's slot; the command, since redis-py's cluster
            # client has no spublish() before 8.0.
            await self.client.execute_command("SPUBLISH", channel, message)
        else:
            await self.client.publish(channel, message)

    async def listen_changes(
        self, instance_id: str, on_change: Callable[[], None]
    ) -> Callable[[], Awaitable[None]] | None:
        own = instance_id.encode("utf-8")

        def received(sender: bytes) -> None:
            if sender != own:
                on_change()

        self._notices.start(instance_id)  # others may listen even when this one cannot
        if not self._can_subscribe():
            return None
        subscription = await self._subscribe(self.keys.changes_channel, received)
        if subscription is None:
            return None

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
        await self._publish(self.keys.changes_channel, sender.encode("utf-8"))
