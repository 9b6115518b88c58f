"""A TCP proxy for outage tests: forwards to a database server and can be cut and restored.

It runs its own event loop in a daemon thread, like a network device between
the application and the server: the test's event loop (busy running tasks)
never delays a cut, and ``cut()`` returns only once every connection through
the proxy has been reset.

* ``cut()``: reset every open connection (both sides, with RST) and refuse
  new ones (accepted and reset at once) until ``restore()``.
  ``cut(hold=True)`` holds new connections instead: accepted, never
  answered until ``restore()`` (a server that does not answer, like a
  blackholed address), then forwarded.
* ``restore()``: forward new connections again, and the held ones.
* ``set_latency(seconds)``: delay every reply from the server (a slow, not a
  dead, database: a brownout).
* ``lose_commit_replies(marker, times)``: on a connection whose transaction
  carried ``marker`` (bytes of a statement or a parameter), forward the
  ``COMMIT`` to the server, let the server apply it, and then reset the
  connection before the reply reaches the client: the commit happened, but the
  client cannot know (the "commit outcome unknown" failure).  With
  ``autocommit=True`` a marked statement sent outside ``BEGIN`` ... ``COMMIT``
  is its own commit (taskflow's one-statement batches on PostgreSQL), so its
  reply is the one lost.

Counters (``accepted``, ``forwarded``, ``cut_connections``, ``refused``, ``held``) let
the test prove that the outage really happened.

``upstream_of(url)`` is where a proxy for a database URL forwards to, and
``through_proxy(url, port)`` the same URL reached through the proxy's port.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import make_url

_T = TypeVar("_T")
_CHUNK = 64 * 1024


def upstream_of(url: str) -> tuple[str, int]:
    """The host and port a proxy in front of the database of ``url`` forwards to."""
    parsed = make_url(url)
    default = 5432 if parsed.get_backend_name().startswith("postgres") else 3306
    return parsed.host or "127.0.0.1", parsed.port or default


def through_proxy(url: str, port: int) -> str:
    """The same database and user, reached through the proxy's port on 127.0.0.1."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


@dataclass(eq=False)
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    marked: bool = False  # the open transaction carried the marker
    in_transaction: bool = False  # a BEGIN was sent and no COMMIT / ROLLBACK yet
    blackholed: bool = False  # replies from the server are dropped

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream_host:upstream_port``; cut on demand."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = 0
        self.accepted = 0  # connections the proxy accepted, forwarded or not
        self.forwarded = 0  # connections piped to the server
        self.cut_connections = 0  # open connections reset by cut()
        self.refused = 0  # connections reset on arrival while cut
        self.held = 0  # connections held unanswered while cut with hold=True
        self.cuts = 0
        self.lost_commits = 0  # COMMITs applied by the server whose reply was dropped
        self._marker: bytes | None = None
        self._autocommit = False
        self._losses_left = 0
        self.commit_settle_s = 0.2
        self.latency = 0.0  # seconds added before each reply from the server is forwarded
        self._is_cut = False
        self._hold = False
        self._restored: asyncio.Event | None = None  # made on the proxy's loop
        self._pairs: set[_Pair] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- control (any thread but the proxy's own) -------------------------------

    def start(self) -> int:
        """Start listening on a free port of 127.0.0.1; returns the port."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._thread.start()
        self.port = self._call(self._start())
        return self.port

    def cut(self, *, hold: bool = False) -> int:
        """Reset every open connection; refuse (or ``hold``) new ones. Returns how many reset."""
        return self._call(self._cut(hold))

    def restore(self) -> None:
        """Forward new connections again."""
        self._call(self._restore())

    def set_latency(self, seconds: float) -> None:
        """Delay each reply from the server by ``seconds`` (0 to stop)."""
        self.latency = seconds

    def lose_commit_replies(
        self, marker: bytes, times: int = 1, *, autocommit: bool = False
    ) -> None:
        """Drop the reply to the next ``times`` COMMITs of transactions that carried ``marker``.

        ``autocommit``: also a marked statement outside an explicit transaction.
        """
        self._call(self._arm(marker, times, autocommit))

    @property
    def open_connections(self) -> int:
        return len(self._pairs)

    def close(self) -> None:
        """Reset everything, stop listening and stop the proxy's thread; idempotent."""
        if self._loop is None or self._thread is None:
            return
        try:
            self._call(self._close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()
            self._loop = self._thread = None

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    # -- the proxy's loop ---------------------------------------------------------

    async def _start(self) -> int:
        self._restored = asyncio.Event()
        self._restored.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _cut(self, hold: bool) -> int:
        assert self._restored is not None
        self._is_cut, self._hold = True, hold
        self._restored.clear()
        self.cuts += 1
        pairs, self._pairs = list(self._pairs), set()
        for pair in pairs:
            pair.abort()
        self.cut_connections += len(pairs)
        return len(pairs)

    async def _arm(self, marker: bytes, times: int, autocommit: bool) -> None:
        self._marker, self._losses_left, self._autocommit = marker, times, autocommit

    async def _restore(self) -> None:
        assert self._restored is not None
        self._is_cut = False
        self._restored.set()

    async def _close(self) -> None:
        self._is_cut, self._hold = True, False
        if self._server is not None:
            self._server.close()
        for pair in list(self._pairs):
            pair.abort()
        self._pairs.clear()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.gather(*handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, client)
        except asyncio.CancelledError:
            # Only close() cancels a handler; finish quietly (asyncio would log a
            # cancelled connection handler as an error).
            client.transport.abort()
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._is_cut and self._hold:
            assert self._restored is not None
            self.held += 1
            await self._restored.wait()  # close() cancels the wait
        if self._is_cut:
            self.refused += 1
            client.transport.abort()
            return
        try:
            up_reader, upstream = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            client.transport.abort()
            return
        if self._is_cut:  # cut while connecting upstream
            self.refused += 1
            client.transport.abort()
            upstream.transport.abort()
            return
        pair = _Pair(client, upstream)
        self._pairs.add(pair)
        self.forwarded += 1
        try:
            await asyncio.gather(self._to_server(pair, reader), self._to_client(pair, up_reader))
        finally:
            if pair in self._pairs:  # ended by either side, not by cut()
                self._pairs.discard(pair)
                for writer in (client, upstream):
                    writer.close()

    async def _to_server(self, pair: _Pair, reader: asyncio.StreamReader) -> None:
        writer = pair.upstream
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if b"BEGIN" in data:
                    pair.in_transaction = True
                if self._marker is not None and self._marker in data:
                    pair.marked = True
                ends_transaction = b"COMMIT" in data or b"ROLLBACK" in data
                commits = b"COMMIT" in data or (self._autocommit and not pair.in_transaction)
                lose_reply = commits and pair.marked and self._losses_left > 0
                if lose_reply:
                    self._losses_left -= 1
                    pair.blackholed = True
                writer.write(data)
                await writer.drain()
                if lose_reply:
                    # Let the server apply the COMMIT, then reset both sides: the
                    # client never hears that its transaction was committed.
                    await asyncio.sleep(self.commit_settle_s)
                    self._pairs.discard(pair)
                    pair.abort()
                    self.lost_commits += 1
                    return
                if ends_transaction or (self._autocommit and not pair.in_transaction):
                    pair.marked = pair.in_transaction = False
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()

    async def _to_client(self, pair: _Pair, reader: asyncio.StreamReader) -> None:
        writer = pair.client
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if pair.blackholed:
                    continue
                if self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()
