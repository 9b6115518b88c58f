"""Routers that rule themselves out of a request in one string test.

Recent FastAPI releases keep each included router as a unit and try every
one of its routes against every request.  Mounted that way, the admin's
thirty-odd routes would cost every request of the app, the user's own
routes included, about 50 µs (measured with ``benchmarks/request_overhead.py``).
A request whose path does not contain the admin's path cannot match any of
them, so it is turned away before any route is tried.  Releases that copy
the routes into the app's own router never call ``matches``, and lose
nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.routing import Match
from starlette.types import Scope


class _GatedRouter(APIRouter):
    """An ``APIRouter`` that answers "no match" at once for a path without its gate text."""

    def __init__(self, gate: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # A gate with a path parameter ("/t/{tenant}/tasks") is not literal
        # text: such a router is always tried.
        self._gate = None if "{" in gate else gate

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        # A substring test rather than startswith: under a root_path (an app
        # mounted inside another) the path carries the mount's prefix first.
        if self._gate is not None and self._gate not in scope.get("path", ""):
            return Match.NONE, {}
        return super().matches(scope)


class PrefixedRouter(_GatedRouter):
    """A router whose every path starts with its (non-empty) prefix, which is its gate."""

    def __init__(self, *, prefix: str, **kwargs: Any) -> None:
        if not prefix:
            raise ValueError("PrefixedRouter needs a non-empty prefix")
        super().__init__(prefix, prefix=prefix, **kwargs)


class AdminRoutes(_GatedRouter):
    """The admin's routers, included in the app as one: one string test per request.

    Each router inside keeps its own prefix (they are all under ``path``);
    this one adds none.  Without it, a request of the app's own routes would
    be tested against each of the admin's routers in turn.
    """

    def __init__(self, path: str) -> None:
        if not path:
            raise ValueError("AdminRoutes needs the admin's path")
        super().__init__(path)
