"""Who may log in to the admin: ``TaskAuthBackend`` and the ``auth=`` forms ``TaskAdmin`` takes.

``auth=`` is one of: a ``(user, password)`` pair, a ``(user, password,
role)`` triple, a list of those, a :class:`TaskAuthBackend`, or a FastAPI
dependency (``Depends(current_user)`` or the bare callable) for apps that
already authenticate their users.  Anything else is a ``TypeError``, as in
fastapi-taskflow.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import inspect
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from fastapi import params
from starlette.concurrency import run_in_threadpool

from taskflow.exceptions import ConfigurationError
from taskflow.web.access import ROLES, Role

# taskflow_admin_sessions.username is VARCHAR(255): longer names cannot log in.
MAX_USERNAME = 255


class TaskAuthBackend(abc.ABC):
    """Checks dashboard logins against your own user store; pass an instance as ``auth=``.

    ``authenticate_user`` is fastapi-taskflow's method.  Return ``True``
    (or ``"admin"``) to let the user in with full rights, ``"viewer"`` for
    read-only access, ``False`` to refuse.  A plain ``def`` runs in a worker
    thread (it may block on a directory or a password hash); an ``async def``
    is awaited.
    """

    @abc.abstractmethod
    def authenticate_user(self, username: str, password: str) -> bool | str | Awaitable[bool | str]:
        """True, "admin" or "viewer" when the credentials are valid; False otherwise."""


class CredentialsBackend(TaskAuthBackend):
    """The fixed users given as ``auth=(user, password[, role])`` or a list of them.

    Names and passwords are compared as keyed digests of their UTF-8 bytes,
    so every comparison is constant-time and of equal length whatever the
    input, and every configured user is compared on every attempt: the
    response time says neither which names exist nor how much of a password
    matched.
    """

    def __init__(self, users: Sequence[tuple[str, str, Role]]) -> None:
        self._key = secrets.token_bytes(32)
        self._users = [(self._digest(u), self._digest(p), role) for u, p, role in users]
        self._roles = {user: role for user, _, role in users}

    def _digest(self, value: str) -> bytes:
        return hmac.new(self._key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def authenticate_user(self, username: str, password: str) -> bool | str:
        """The role of the matching user, or False."""
        name, secret = self._digest(username), self._digest(password)
        granted: Role | None = None
        for user_digest, password_digest, role in self._users:
            # `&`, not `and`: both comparisons always run.
            matches = hmac.compare_digest(user_digest, name) & hmac.compare_digest(
                password_digest, secret
            )
            if matches and granted is None:
                granted = role
        return granted if granted is not None else False

    def grants(self, username: str, role: str) -> bool:
        """Whether ``username`` is still configured with ``role``.

        Sessions outlive restarts (they are in the database): a user removed
        from ``auth=``, or given another role, must not keep a session.
        """
        return self._roles.get(username) == role


@dataclass(frozen=True)
class AuthConfig:
    """What ``auth=`` resolved to: a backend behind a login form, or the app's own dependency."""

    backend: TaskAuthBackend | None = None
    dependency: params.Depends | None = None

    @property
    def still_granted(self) -> Callable[[str, str], bool] | None:
        """Re-checks a stored session's user and role, where the backend can tell."""
        return self.backend.grants if isinstance(self.backend, CredentialsBackend) else None


def resolve_auth(auth: object) -> AuthConfig | None:
    """Turn the ``auth=`` argument into an :class:`AuthConfig` (None: no authentication).

    Raises:
        TypeError: ``auth`` is none of the accepted forms.
        ConfigurationError: a credential is malformed (empty, unknown role, duplicate user).
    """
    if auth is None:
        return None
    if isinstance(auth, TaskAuthBackend):
        return AuthConfig(backend=auth)
    if isinstance(auth, type) and issubclass(auth, TaskAuthBackend):
        raise TypeError(f"auth= needs an instance of {auth.__name__}, not the class itself")
    if isinstance(auth, tuple):
        return AuthConfig(backend=CredentialsBackend([_credential(auth)]))
    if isinstance(auth, list):
        return AuthConfig(backend=CredentialsBackend(_credentials(auth)))
    if isinstance(auth, params.Depends):
        if auth.dependency is None:
            raise TypeError("auth=Depends() needs the dependency callable: Depends(current_user)")
        return AuthConfig(dependency=auth)
    if callable(auth):
        return AuthConfig(dependency=params.Depends(auth))
    raise TypeError(
        "auth= takes a (user, password) tuple, a list of them, a TaskAuthBackend instance "
        f"or a FastAPI dependency; got {type(auth).__name__}"
    )


def _credentials(entries: list[Any]) -> list[tuple[str, str, Role]]:
    if not entries:
        raise ConfigurationError("auth= got an empty list: give at least one (user, password)")
    users = [_credential(entry) for entry in entries]
    names = [user for user, _, _ in users]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigurationError(f"auth= lists these users more than once: {duplicates}")
    return users


def _credential(entry: Any) -> tuple[str, str, Role]:
    if not isinstance(entry, tuple) or len(entry) not in (2, 3):
        raise TypeError(
            "each auth= credential is a (user, password) or (user, password, role) tuple; "
            f"got {entry!r:.40}"
        )
    user, password, *rest = entry
    role = rest[0] if rest else "admin"
    if not isinstance(user, str) or not isinstance(password, str):
        raise TypeError("auth= user names and passwords are strings")
    if not user or not password:
        raise ConfigurationError("auth= user names and passwords must not be empty")
    if len(user) > MAX_USERNAME:
        raise ConfigurationError(f"auth= user names are at most {MAX_USERNAME} characters")
    if role not in ROLES:
        raise ConfigurationError(f"auth= role must be one of {list(ROLES)}, got {role!r}")
    return user, password, cast(Role, role)


async def authenticate(backend: TaskAuthBackend, username: str, password: str) -> Role | None:
    """Ask ``backend`` about a login; the granted role, or None.

    Only ``True`` and the role names grant access: a backend that returns
    anything else (a truthy object, an unknown role) is treated as refusing,
    so a bug in it fails closed.
    """
    check: Callable[[str, str], Any] = backend.authenticate_user
    if isinstance(backend, CredentialsBackend):
        answer: Any = check(username, password)
    elif inspect.iscoroutinefunction(check):
        answer = await check(username, password)
    else:
        answer = await run_in_threadpool(check, username, password)
        if inspect.isawaitable(answer):
            answer = await answer
    if answer is True:
        return "admin"
    if isinstance(answer, str) and answer in ROLES:
        return answer
    return None
