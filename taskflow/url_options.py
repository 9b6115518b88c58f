"""Query options of server URLs, made valid for the async drivers at construction.

Apps bring URLs written for psycopg2 or PyMySQL: ``?sslmode=require``,
``?connect_timeout=10``, ``?ssl-mode=REQUIRED``.  SQLAlchemy hands URL options
to asyncpg and aiomysql as they are, as strings, so such a URL used to fail
only when the first connection was opened, with an unexpected-keyword error.
Here each option is renamed, typed and checked once, when the manager is
built; one the driver does not know is a ``ConfigurationError`` that names it.
PostgreSQL's options, TLS included, are in ``postgres_options.py``.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from taskflow.exceptions import ConfigurationError
from taskflow.postgres_options import flag, postgres_options, single, typed_value

Options = dict[str, Any]

# Options SQLAlchemy's MySQL dialect and both drivers (aiomysql, asyncmy: PyMySQL's
# descendants) understand, as URL text.
_MYSQL_KNOWN = {
    "charset",
    "connect_timeout",
    "local_infile",
    "client_flag",
    "init_command",
    "sql_mode",
    "program_name",
    "auth_plugin",
    "server_public_key",
    "unix_socket",
    "use_unicode",
    "autocommit",
    "ssl_ca",
    "ssl_cert",
    "ssl_key",
    "ssl_capath",
    "ssl_cipher",
    "ssl_check_hostname",
}
_MYSQL_SSL_MODES = ("DISABLED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")


Kept = dict[str, Any]  # str, or a tuple of str for PostgreSQL's several hosts


def split_options(
    backend: str, query: Mapping[str, Any], *, driver: str = ""
) -> tuple[Kept, Options]:
    """Split a URL's options into those left in the URL and typed ``connect_args``.

    ``driver``: the one the URL resolved to, named in errors; PostgreSQL's
    options differ between asyncpg and psycopg.

    Raises:
        ConfigurationError: an option the driver does not know, or a bad value.
    """
    if not query:
        return {}, {}
    if backend == "postgresql":
        return postgres_options(query, driver)
    options = {key: single(key, value) for key, value in query.items()}
    if backend == "mysql":
        return _mysql(options, driver or "aiomysql")
    return dict(options), {}


_MYSQL_TLS_FILES = ("ssl_ca", "ssl_capath", "ssl_cert", "ssl_key", "ssl_check_hostname")


def _mysql(options: dict[str, str], driver: str) -> tuple[Kept, Options]:
    kept: Kept = {}
    typed: Options = {}
    mode = options.pop("ssl-mode", None)
    if mode is not None:
        # The ssl_* options then go into the TLS context, not to SQLAlchemy,
        # whose own ssl dict the context would replace.
        tls = {key: options.pop(key) for key in _MYSQL_TLS_FILES if key in options}
        context = _mysql_ssl(mode, tls, driver)
        if context is not None:
            typed["ssl"] = context
    for key, value in options.items():
        if key == "connect_timeout":
            typed[key] = typed_value(key, value, int)  # else the engine's default wins
        elif "-" in key:
            raise ConfigurationError(
                f"database URL option {key!r} is not understood by {driver}, taskflow's MySQL "
                f"driver (options are written with underscores: {key.replace('-', '_')!r}?)"
            )
        elif key in _MYSQL_KNOWN:
            kept[key] = value
        else:
            raise ConfigurationError(
                f"database URL option {key!r} is not understood by {driver}, taskflow's MySQL "
                f"driver: use one of ssl-mode, {', '.join(sorted(_MYSQL_KNOWN))}"
            )
    return kept, typed


def _mysql_ssl(mode: str, tls: dict[str, str], driver: str) -> ssl.SSLContext | None:
    """The TLS context for a MySQL client ``ssl-mode`` and the ``ssl_*`` options; None: no TLS."""
    wanted = mode.upper()
    if wanted == "DISABLED":
        return None
    if wanted not in _MYSQL_SSL_MODES:
        raise ConfigurationError(
            f"database URL option ssl-mode={mode!r}: use one of {', '.join(_MYSQL_SSL_MODES)} "
            f"(PREFERRED is not offered: {driver} cannot fall back to a plain connection)"
        )
    try:
        context = ssl.create_default_context(cafile=tls.get("ssl_ca"), capath=tls.get("ssl_capath"))
        if "ssl_cert" in tls:
            context.load_cert_chain(tls["ssl_cert"], tls.get("ssl_key"))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"database URL TLS files cannot be used: {exc}") from exc
    if wanted in ("REQUIRED", "VERIFY_CA"):
        context.check_hostname = False
    if wanted == "REQUIRED":
        context.verify_mode = ssl.CERT_NONE  # encrypted, server not verified, as MySQL's client
    if "ssl_check_hostname" in tls:
        context.check_hostname = flag("ssl_check_hostname", tls["ssl_check_hostname"])
    return context
