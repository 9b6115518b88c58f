"""The access policies behind ``TaskAdmin(auth=...)``: login sessions, or the app's own dependency.

Both implement :class:`~taskflow.web.access.AdminAccess` (``viewer`` and
``operator`` dependencies) plus ``page``, the guard of HTML pages: where
``viewer`` answers an API client with 401, ``page`` sends a browser to the
login form.  :func:`page_guard` gives the right one for any policy.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Any, cast

from fastapi import HTTPException, Request, params

from taskflow.repository.base import AdminSession
from taskflow.web.access import ROLES, Actor, AdminAccess, Role, is_same_origin
from taskflow.web.sessions import COOKIE_NAME, SessionStore

CSRF_HEADER = "X-CSRF-Token"
# request.state attribute holding the session a request was let in with.
STATE_ATTR = "taskflow_admin_session"

Guard = Callable[..., Coroutine[Any, Any, Actor]]


def unauthorized() -> HTTPException:
    return HTTPException(401, "Unauthorized")


def refuse_cross_site(request: Request) -> None:
    """403 when a browser says the request comes from another site's page."""
    if not is_same_origin(request):
        raise HTTPException(403, "Cross-site request refused: send it from the same origin")


def refuse_viewer(actor: Actor) -> None:
    if not actor.can_operate:
        raise HTTPException(403, f"{actor.name!r} has read-only access")


def request_session(request: Request) -> AdminSession | None:
    """The session ``SessionAccess`` let this request in with (None under other policies)."""
    return cast(AdminSession | None, getattr(request.state, STATE_ATTR, None))


class SessionAccess:
    """Logins through the form at ``{path}/auth/login``, kept as server-side sessions.

    Changes need, besides an admin session: a same-origin request and the
    session's CSRF token in ``X-CSRF-Token``.  The cookie is already
    ``SameSite=Strict``; the token also covers browsers and proxies that get
    SameSite or ``Origin`` wrong.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        path: str,
        still_granted: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.store = store
        self.path = path
        self._still_granted = still_granted

    def login_url(self, request: Request) -> str:
        """Where the login form is, under the app's ``root_path``."""
        return f"{request.scope.get('root_path', '')}{self.path}/auth/login"

    async def current(self, request: Request) -> AdminSession | None:
        """The request's live session, or None; the SSE stream may call it again to re-check."""
        session = await self.store.get(request.cookies.get(COOKIE_NAME))
        if session is None:
            return None
        if self._still_granted and not self._still_granted(session.username, session.role):
            return None  # the user left auth= (or changed role) since logging in
        setattr(request.state, STATE_ATTR, session)
        return session

    async def viewer(self, request: Request) -> Actor:
        session = await self.current(request)
        if session is None:
            raise unauthorized()
        return _actor(session)

    async def operator(self, request: Request) -> Actor:
        session = await self.current(request)
        if session is None:
            raise unauthorized()
        actor = _actor(session)
        refuse_viewer(actor)
        refuse_cross_site(request)
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
            raise HTTPException(403, f"Missing or wrong {CSRF_HEADER} header")
        return actor

    async def page(self, request: Request) -> Actor:
        session = await self.current(request)
        if session is None:
            raise HTTPException(
                303, "Login required", headers={"Location": self.login_url(request)}
            )
        return _actor(session)


def _actor(session: AdminSession) -> Actor:
    # A role this version does not know (a newer one wrote the row) gets the least rights.
    role: Role = session.role if session.role in ROLES else "viewer"
    return Actor(session.username, role)


class DependencyAccess:
    """The app's own authentication, given as ``auth=Depends(current_user)``.

    The dependency returns a user name or an :class:`Actor` (for a read-only
    ``Actor(name, "viewer")``) and raises 401 itself; returning None also
    means 401.  There is no session, hence no CSRF token: changes need a
    same-origin request, which modern browsers prove with ``Origin`` and
    ``Sec-Fetch-Site``.  No login form is mounted.
    """

    viewer: Guard
    operator: Guard
    page: Guard

    def __init__(self, dependency: params.Depends) -> None:
        async def viewer(request: Request, principal: Any = dependency) -> Actor:
            return _principal_actor(principal)

        async def operator(request: Request, principal: Any = dependency) -> Actor:
            actor = _principal_actor(principal)
            refuse_viewer(actor)
            refuse_cross_site(request)
            return actor

        self.viewer = viewer
        self.operator = operator
        # A browser is handled by the app's own dependency (it may redirect itself).
        self.page = viewer


def _principal_actor(principal: Any) -> Actor:
    # A Depends here means the guard was called directly, not through FastAPI:
    # the app's dependency never ran, so refuse rather than guess.
    if isinstance(principal, params.Depends) or not principal:
        raise unauthorized()
    if isinstance(principal, Actor):
        return principal
    if isinstance(principal, str):
        return Actor(principal)
    raise TypeError(
        "the auth= dependency must return a user name (str), a taskflow.web.access.Actor "
        f"or None, not {type(principal).__name__}"
    )


def page_guard(access: AdminAccess) -> Guard:
    """The dependency that guards an HTML page: ``Depends(page_guard(admin.access))``.

    Under login sessions an anonymous browser gets ``303`` to the login form;
    under the app's dependency, whatever that dependency does; with no
    ``auth=``, everyone is let in.
    """
    guard: Guard = getattr(access, "page", access.viewer)
    return guard
