"""``AdminRoute``: how every admin API route answers, whatever its status.

Two rules hold for each response, errors included:

* ``Cache-Control: no-store``.  The answers hold task arguments, errors and
  audit entries: no browser, proxy or CDN may keep a copy.  The header is
  added around the route's handling, exception handlers included, so a 404
  or a 422 carries it as well as a 200.
  A route that chose its own ``Cache-Control`` (the event stream's
  ``no-cache``) keeps it.
* A validation error can be sent.  FastAPI's 422 echoes the input, and
  JSON may carry a lone surrogate (``"\\ud800"``) that no UTF-8 response can
  hold, or a number too large for a float (``1e999``, infinity) that strict
  JSON cannot: the app's handler would fail with a 500.  Such values are
  written as text before the app's handler sees the error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

CACHE_CONTROL = b"cache-control"
NO_STORE = b"no-store"


def no_store(send: Send) -> Send:
    """``send`` adding ``Cache-Control: no-store`` to a response that has none."""

    async def send_with_header(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if all(name.lower() != CACHE_CONTROL for name, _ in headers):
                headers.append((CACHE_CONTROL, NO_STORE))
                message = {**message, "headers": headers}
        await send(message)

    return send_with_header


def encodable(value: Any) -> Any:
    """``value`` as strict JSON in UTF-8 can hold it: lone surrogates escaped,
    infinities and NaN (``1e999`` in a body) as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
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

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Around everything the route does, exception handlers included.
        await super().handle(scope, receive, no_store(send))

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
