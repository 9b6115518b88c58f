"""The stored names of a task hash's fields, and the values a hash leaves out.

A deployment holds millions of finished tasks, so a task's hash is kept
small (format 2, ``repository.FORMAT_VERSION``): each field is stored under
a one- or two-letter name, and a value that the rest of the hash implies is
not stored at all:

* the task id (it is in the key's name);
* a field at its default (``DEFAULTS``: source ``manual``, payload format
  ``json``, epoch, attempt and max_retries 0);
* ``run_at`` equal to ``created_at``, and ``updated_at`` equal to
  ``finished_at`` (or, while the task has not finished, to ``created_at``).

Python code and Lua code both use the long names (the SQL column names);
only the stored hash has the short ones.  The mapping is defined once, here:
``codec.py`` reads hashes through it, and ``lua_tables()`` /
``with_fields()`` write it into the Lua source, so that the two cannot drift.
"""

from __future__ import annotations

from string import Template

#: Long (SQL column) name -> the field's name in the stored hash.
STORED: dict[str, str] = {
    "status": "s",
    "func_name": "f",
    "args": "a",
    "kwargs": "k",
    "tags": "t",
    "result": "r",
    "duration_ms": "d",
    "executor": "x",
    "priority": "p",
    "owner": "o",
    "source": "so",
    "attempt": "n",
    "max_retries": "mr",
    "created_at": "ca",
    "run_at": "ra",
    "updated_at": "ua",
    "started_at": "sa",
    "finished_at": "fa",
    "lease_expires_at": "le",
    "lease_epoch": "ep",
    "error": "er",
    "stacktrace": "tb",
    "payload": "pl",
    "payload_format": "pf",
    "idempotency_key": "ik",
    "retried_from": "rf",
    "schedule_name": "sn",
    "scheduled_for": "sf",
    "run_key": "rk",
}

#: The stored name -> the long name.
LONG: dict[str, str] = {short: long for long, short in STORED.items()}

#: Values not stored because they are the default (as text, as Redis returns them).
DEFAULTS: dict[str, str] = {
    "source": "manual",
    "payload_format": "json",
    "lease_epoch": "0",
    "attempt": "0",
    "max_retries": "0",
}

DEFAULT_SOURCE = DEFAULTS["source"]

#: The stored names as bytes, as a binary-safe client returns them.
STORED_BYTES: dict[str, bytes] = {long: short.encode("ascii") for long, short in STORED.items()}


def _lua_table(pairs: dict[str, str]) -> str:
    return "{" + ", ".join(f"[{k!r}] = {v!r}" for k, v in pairs.items()) + "}"


def lua_tables() -> str:
    """Lua source defining ``TF_F`` (long -> stored), ``TF_L`` (stored -> long), ``TF_DEFAULT``."""
    return (
        f"local TF_F = {_lua_table(STORED)}\n"
        f"local TF_L = {_lua_table(LONG)}\n"
        f"local TF_DEFAULT = {_lua_table(DEFAULTS)}\n"
    )


def with_fields(lua: str) -> str:
    """``lua`` with each ``$name`` replaced by the quoted stored name of field ``name``."""
    return Template(lua).substitute({long: repr(short) for long, short in STORED.items()})
