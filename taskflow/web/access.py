"""Who is calling the admin API, and what they may do.

Every admin route depends on an :class:`AdminAccess`: ``viewer`` for reads,
``operator`` for anything that changes state.  Without ``auth=`` the
:class:`OpenAccess` policy lets everyone in, but still refuses state changes
from another site's page (a cross-site form must not be able to replay every
failed task just because the dashboard has no login).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

Role = Literal["admin", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "viewer")


@dataclass(frozen=True, slots=True)
class Actor:
    """The caller as recorded in the audit log."""

    name: str
    role: Role = "admin"

    @property
    def can_operate(self) -> bool:
        return self.role == "admin"


ANONYMOUS = Actor("anonymous", "admin")


class AdminAccess(Protocol):
    """The access policy of one ``TaskAdmin``; both methods are FastAPI dependencies."""

    async def viewer(self, request: Request) -> Actor:
        """The caller, when they may read; otherwise raise 401."""
        ...

    async def operator(self, request: Request) -> Actor:
        """The caller, when they may change state; otherwise raise 401 or 403."""
        ...


def is_same_origin(request: Request) -> bool:
    """True unless the browser says the request comes from another site.

    Browsers send ``Origin`` on every cross-site POST/DELETE and
    ``Sec-Fetch-Site`` on every request; clients such as curl send neither
    and are not a cross-site threat.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


class OpenAccess:
    """No login: everyone is an anonymous admin, but only same-origin requests change state."""

    async def viewer(self, request: Request) -> Actor:
        return ANONYMOUS

    async def operator(self, request: Request) -> Actor:
        if not is_same_origin(request):
            raise HTTPException(403, "Cross-site request refused: send it from the same origin")
        return ANONYMOUS
