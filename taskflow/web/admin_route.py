"""``AdminRoute``: how every admin API route answers, whatever its status.

Two rules hold for each response, errors included:

* ``Cache-Control: no-store``.  The answers hold task arguments, errors and
  audit entries: no browser, proxy or CDN may keep a copy.  The header is
  added around the route's ASGI app, which is where FastAPI turns
  exceptions into responses, so a 404 or a 422 carries it as well as a 200.
  A route that chose its own ``Cache-Control`` (the event stream's
  ``no-cache``) keeps it.
* A validation error can be sent.  FastAPI's 422 echoes the input, and
  JSON may carry a lone surrogate (``"\\ud800"``) that no UTF-8 response can
  hold: the app's handler would fail with a 500.  Such characters are
  escaped (``\\ud800`` as text) before the app's handler sees the error.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CACHE_CONTROL = b"cache-control"
NO_STORE = b"no-store"


def no_store(app: ASGIApp) -> ASGIApp:
    """``app`` with ``Cache-Control: no-store`` added to any response that has none."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if all(name.lower() != CACHE_CONTROL for name, _ in headers):
                    headers.append((CACHE_CONTROL, NO_STORE))
                    message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_header)

    return wrapped


def encodable(value: Any) -> Any:
    """``value`` with every string made encodable as UTF-8 (lone surrogates escaped)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {encodable(key): encodable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(encodable(item) for item in value)
    return value


class AdminRoute(APIRoute):
    """An API route whose responses are never cached and whose 422s can always be sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = no_store(self.app)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise RequestValidationError(
                    encodable(list(exc.errors())), body=encodable(exc.body)
                ) from None

        return handle
