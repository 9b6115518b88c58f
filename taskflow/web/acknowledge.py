"""The ASGI hold: a response leaves only once the tasks its request added are committed.

Installed by ``init_app()`` (so by ``TaskAdmin`` and ``install(app)``) as a
plain ASGI middleware, so it works the same whatever FastAPI version runs
the app and however it orders dependency exits and background tasks: it
sees the response's first message and waits there.  A request that added
no task pays one context-variable switch and one comparison per message.

While it waits nothing has reached the client yet, so a database that does
not confirm in time turns the response into a 503 with ``Retry-After``
(the request's tasks are withdrawn, see ``runtime/acknowledgement.py``).
Tasks added while a streaming response is already under way are waited for
before its next message; if they cannot be confirmed then, the response is
broken off, since its status has gone out already.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskflow.exceptions import TaskNotAcknowledgedError
from taskflow.runtime.acknowledgement import Receipt, Refusal, current_receipt

if TYPE_CHECKING:
    from taskflow.manager import TaskManager


class AcknowledgeMiddleware:
    """Hold each response until its request's task rows are committed (see module doc)."""

    def __init__(self, app: ASGIApp, manager: TaskManager) -> None:
        self.app = app
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        manager = self.manager
        receipt = Receipt(manager, inject=manager.injects_into(scope.get("app")))
        token = current_receipt.set(receipt)
        status: int | None = None
        replaced = False

        async def held_send(message: Message) -> None:
            nonlocal status, replaced
            if replaced:
                return  # the refusal went out whole: nothing of the app's follows it
            kind = message["type"]
            if receipt.waiting and kind in _HELD:
                refusal = await manager.acknowledge(receipt)
                if refusal is not None:
                    if kind != "http.response.start":
                        raise TaskNotAcknowledgedError(refusal.detail)
                    replaced = True
                    status = refusal.status_code
                    await _send_refusal(send, refusal)
                    # Stop the app's response here: its background (plain
                    # FastAPI tasks of the refused request) must not run either.
                    raise _Refused
            if kind == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, held_send)
        except Exception:
            if not replaced:
                raise
            # The refusal went out whole; how the app's response ended does not matter.
        finally:
            receipt.closed = True
            current_receipt.reset(token)
            if receipt.tasks:
                manager.settle_request(receipt, status)
                receipt.tasks.clear()  # tasks' copies of the context keep the receipt
        if manager.drain_after_requests:
            # taskflow.testing.inline_tasks(): the client's call returns once the
            # tasks are over, as it does for FastAPI's own background tasks.
            await manager.drain()


# The messages that carry the response to the client (not TestClient's debug one).
_HELD = frozenset(("http.response.start", "http.response.body"))


class _Refused(Exception):
    """Raised through the app once its response was replaced by a refusal."""


async def _send_refusal(send: Send, refusal: Refusal) -> None:
    body = json.dumps({"detail": refusal.detail}).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if refusal.retry_after is not None:
        headers.append((b"retry-after", str(refusal.retry_after).encode()))
    start: dict[str, Any] = {"type": "http.response.start", "status": refusal.status_code}
    start["headers"] = headers
    await send(start)
    await send({"type": "http.response.body", "body": body})
