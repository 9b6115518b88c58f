"""``PrefixedRouter``: an ``APIRouter`` that rules itself out of a request in one string test."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.routing import Match
from starlette.types import Scope


class PrefixedRouter(APIRouter):
    """A router whose every path starts with its (non-empty) prefix.

    Recent FastAPI releases keep each included router as a unit and try every
    one of its routes against every request.  Mounted that way, the admin's
    thirty-odd routes would cost every request of the app, the user's own
    routes included, about 50 µs (measured with ``benchmarks/request_overhead.py``).
    A request whose path does not contain the prefix cannot match any route
    here, so it is turned away before any route is tried.  Releases that copy
    the routes into the app's own router never call ``matches``, and lose
    nothing.
    """

    def __init__(self, *, prefix: str, **kwargs: Any) -> None:
        if not prefix:
            raise ValueError("PrefixedRouter needs a non-empty prefix")
        super().__init__(prefix=prefix, **kwargs)
        # A prefix with a path parameter ("/t/{tenant}/tasks") is not literal text.
        self._literal = "{" not in prefix

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        # A substring test rather than startswith: under a root_path (an app
        # mounted inside another) the path carries the mount's prefix first.
        if self._literal and self.prefix not in scope.get("path", ""):
            return Match.NONE, {}
        return super().matches(scope)
