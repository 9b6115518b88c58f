"""PostgreSQL URL options, TLS included, made valid for asyncpg or psycopg 3 at construction.

Managed PostgreSQL is reached with libpq's URL options:
``?sslmode=verify-full&sslrootcert=/ca.pem``, ``sslcert`` / ``sslkey`` for a
client certificate.  psycopg 3 *is* libpq, so it takes them as they are,
once checked.  asyncpg reads none of the file options from keyword
arguments, so for it they become the ``ssl`` argument: the mode itself where
asyncpg's own handling of the mode matches libpq's, otherwise an
``ssl.SSLContext`` built to match the mode.  A mode asyncpg cannot honour,
an unknown mode or a certificate file this process cannot read is a
``ConfigurationError`` when the manager is built, not at the first connection.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from taskflow.exceptions import ConfigurationError

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
TLS_FILES = ("sslrootcert", "sslcert", "sslkey")
TLS_OPTIONS = ("sslmode", *TLS_FILES, "sslpassword")
# libpq's own default place of the CA file, read when the URL names none.
DEFAULT_ROOT_CERT = Path("~/.postgresql/root.crt")

Kept = dict[str, Any]  # str, or a tuple of str for several hosts
Options = dict[str, Any]

_ASYNCPG_RENAMED = {"connect_timeout": "timeout"}
_ASYNCPG_TYPED: dict[str, Callable[[str], Any]] = {
    "timeout": float,
    "command_timeout": float,
    "max_cached_statement_lifetime": float,
    "statement_cache_size": int,
    "max_cacheable_statement_size": int,
    "prepared_statement_cache_size": int,
}
_ASYNCPG_TEXT = {
    "target_session_attrs",
    "passfile",
    "service",
    "servicefile",
    "krbsrvname",
    "gsslib",
}
_PSYCOPG_TYPED: dict[str, Callable[[str], Any]] = {"connect_timeout": int}


def postgres_options(query: Mapping[str, Any], driver: str) -> tuple[Kept, Options]:
    """Split a PostgreSQL URL's options into those left in the URL and typed ``connect_args``.

    Raises:
        ConfigurationError: an option ``driver`` does not know, a bad value,
            an unknown ``sslmode`` or a TLS file that cannot be read.
    """
    if "ssl" in query:  # asyncpg's own spelling of sslmode
        if "sslmode" in query:
            raise ConfigurationError("database URL options ssl and sslmode: give sslmode alone")
        query = {("sslmode" if key == "ssl" else key): value for key, value in query.items()}
    tls = {key: single(key, query[key]) for key in TLS_OPTIONS if key in query}
    check_tls(tls)
    rest = {key: value for key, value in query.items() if key not in TLS_OPTIONS}
    if driver == "psycopg":
        kept, typed = _psycopg(rest)
        typed.update(tls)  # libpq reads them itself, as written
        return kept, typed
    kept, typed = _asyncpg(rest)
    context = asyncpg_ssl(tls)
    if context is not None:
        typed["ssl"] = context
    return kept, typed


def single(key: str, value: Any) -> str:
    """The one value of a URL option; given twice is a mistake worth saying."""
    if isinstance(value, tuple):
        raise ConfigurationError(f"database URL option {key!r} is given more than once")
    return str(value)


def check_tls(tls: Mapping[str, str]) -> None:
    """Refuse an unknown ``sslmode`` and certificate files this process cannot read."""
    mode = tls.get("sslmode", "prefer")
    if mode not in SSLMODES:
        raise ConfigurationError(
            f"database URL option sslmode={mode!r}: use one of {', '.join(SSLMODES)}"
        )
    if tls.get("sslrootcert") == "system" and mode != "verify-full":
        raise ConfigurationError(
            "database URL option sslrootcert=system trusts every public CA, so it needs "
            f"sslmode=verify-full (the server's name checked too), not sslmode={mode}"
        )
    for key in TLS_FILES:
        path = tls.get(key)
        if path is not None and not (key == "sslrootcert" and path == "system"):
            _readable(key, path)


def _readable(key: str, path: str) -> None:
    try:
        with open(os.path.expanduser(path), "rb"):
            pass
    except OSError as exc:
        raise ConfigurationError(
            f"database URL option {key}={path!r}: the file cannot be read ({exc.strerror}); "
            "give the path of a PEM file this process may read"
        ) from None


def asyncpg_ssl(tls: Mapping[str, str]) -> bool | str | ssl.SSLContext | None:
    """asyncpg's ``ssl`` argument for libpq's TLS options; None: asyncpg's default (prefer).

    ``allow`` becomes ``prefer``: asyncpg would require TLS for it, while
    libpq falls back either way (``allow`` tries without TLS first).
    """
    mode = tls.get("sslmode")
    files = [key for key in TLS_FILES if key in tls]
    if mode is None and not files:
        return None
    mode = mode or "prefer"  # libpq's default
    if mode == "disable":
        return False
    if mode in ("allow", "prefer"):
        if "sslcert" in tls or "sslkey" in tls:
            raise ConfigurationError(
                f"database URL option sslcert/sslkey with sslmode={mode}: asyncpg presents a "
                "client certificate only when TLS is required; use sslmode=require, verify-ca "
                "or verify-full (or the psycopg driver: postgresql+psycopg://)"
            )
        return "prefer"
    if not files:
        if mode != "require":
            _root_cert(mode)  # asyncpg finds it itself, as libpq does; say now if it cannot
        return mode
    return _context(mode, tls)


def _root_cert(mode: str) -> str | None:
    """The CA file libpq would use: ``PGSSLROOTCERT``, else ``~/.postgresql/root.crt``."""
    given = os.environ.get("PGSSLROOTCERT")
    if given:
        _readable("PGSSLROOTCERT", given)
        return given
    default = DEFAULT_ROOT_CERT.expanduser()
    if default.is_file():
        return str(default)
    if mode == "require":
        return None
    raise ConfigurationError(
        f"sslmode={mode} verifies the server against a CA certificate, and none is given: add "
        "sslrootcert=/path/to/ca.pem to the database URL (your provider publishes it), or "
        "sslrootcert=system with sslmode=verify-full for a server signed by a public CA"
    )


def _context(mode: str, tls: Mapping[str, str]) -> ssl.SSLContext:
    """A TLS context doing what libpq does for ``mode`` with these files."""
    if "sslkey" in tls and "sslcert" not in tls:
        raise ConfigurationError(
            "database URL option sslkey needs sslcert, the client certificate it belongs to"
        )
    root = tls.get("sslrootcert")
    try:
        if root == "system":
            context = ssl.create_default_context()
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            root = os.path.expanduser(root) if root else _root_cert(mode)
            if root is None:  # require without a CA: encrypted, server not verified
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                context.load_verify_locations(cafile=root)
        # A CA file makes even "require" check the chain (libpq's rule);
        # only verify-full checks the server's name as well.
        context.check_hostname = mode == "verify-full"
        if "sslcert" in tls:
            key = tls.get("sslkey")
            context.load_cert_chain(
                os.path.expanduser(tls["sslcert"]),
                os.path.expanduser(key) if key else None,
                tls.get("sslpassword"),
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"database URL TLS files cannot be used ({exc}): sslrootcert, sslcert and sslkey "
            "must be PEM files, and sslpassword must open an encrypted key"
        ) from None
    context.set_alpn_protocols(["postgresql"])  # what a server offering direct TLS expects
    return context


def _asyncpg(query: Mapping[str, Any]) -> tuple[Kept, Options]:
    kept: Kept = {}
    typed: Options = {}
    for key, given in query.items():
        if key == "host":  # one, or several (SQLAlchemy's form): kept as given
            kept[key] = given
            continue
        value = single(key, given)
        name = _ASYNCPG_RENAMED.get(key, key)
        if name == "application_name":
            typed.setdefault("server_settings", {})["application_name"] = value
        elif name in _ASYNCPG_TYPED:
            typed[name] = typed_value(key, value, _ASYNCPG_TYPED[name])
        elif name == "direct_tls":
            typed[name] = flag(key, value)
        elif name in _ASYNCPG_TEXT:
            kept[name] = value
        else:
            known = sorted(
                {*TLS_OPTIONS, *_ASYNCPG_RENAMED, *_ASYNCPG_TYPED, *_ASYNCPG_TEXT}
                | {"direct_tls", "application_name"}
            )
            raise ConfigurationError(
                f"database URL option {key!r} is not understood by asyncpg, taskflow's "
                f"default PostgreSQL driver: use one of {', '.join(known)} "
                "(or the psycopg driver, postgresql+psycopg://, which takes every libpq option)"
            )
    return kept, typed


def _psycopg(query: Mapping[str, Any]) -> tuple[Kept, Options]:
    """psycopg takes libpq's options; libpq itself says which it knows."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import make_conninfo

    kept: Kept = {}
    typed: Options = {}
    for key, given in query.items():
        if key == "host":
            kept[key] = given
            continue
        value = single(key, given)
        kind = _PSYCOPG_TYPED.get(key)
        typed[key] = value if kind is None else typed_value(key, value, kind)
    try:
        make_conninfo("", **typed)
    except ProgrammingError as exc:
        raise ConfigurationError(
            f"database URL: {exc} for psycopg (libpq's options are listed at "
            "https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS)"
        ) from None
    return kept, typed


def typed_value(key: str, value: str, kind: Callable[[str], Any]) -> Any:
    """``value`` as a number for the driver, or an error naming the option."""
    try:
        return kind(value)
    except ValueError:
        raise ConfigurationError(f"database URL option {key}={value!r} must be a number") from None


def flag(key: str, value: str) -> bool:
    """A URL's true/false option as a bool."""
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"database URL option {key}={value!r} must be true or false")
