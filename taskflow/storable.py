"""Text and JSON values made storable by every database taskflow writes to.

A value a database refuses must never reach a write: one refused row used to
stop the group commit that carried it, and every task after it.  The
databases differ in what they refuse (PostgreSQL: NUL in text and JSON;
PostgreSQL and MariaDB: lone UTF-16 surrogates, which are not Unicode text;
MariaDB: anything over its packet size; every JSON column: NaN and
infinities), so taskflow stores one form on all of them, chosen here:

* NUL and lone surrogates become U+FFFD, the replacement character, so the
  substitution is visible where the value is shown;
* text longer than its column's cap is cut, with a note saying how long it was;
* in JSON, non-finite floats become null, and a value whose encoding is
  larger than the cap is replaced by a string saying so.

Task arguments are not changed here: the function must get them exactly,
so ``serialization`` pickles those that are not storable as JSON instead.
The checks cost almost nothing for the common case (ASCII text without NUL).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

REPLACEMENT = "\ufffd"
# Error messages and log lines: enough for any message a person reads.
MAX_MESSAGE_CHARS = 64 * 1024
# Stack traces: deep recursion gives long ones, still far below any limit.
MAX_TRACE_CHARS = 256 * 1024
# A task result or log extra, as JSON (at most two bytes on the wire per
# byte, once quoted, so it fits MariaDB's default 16 MiB packet).
MAX_JSON_BYTES = 4 * 1024 * 1024
_MAX_DEPTH = 64

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_encode_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def is_storable_text(text: str) -> bool:
    """True if every database stores ``text`` unchanged (no NUL, no lone surrogate)."""
    if text.isascii():  # O(1) in CPython: the common case stops here, after the NUL scan
        return "\x00" not in text
    return _UNSTORABLE.search(text) is None


def storable_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD, cut to ``limit`` characters."""
    if not is_storable_text(text):
        text = _UNSTORABLE.sub(REPLACEMENT, text)
    if len(text) > limit:
        text = f"{text[:limit]}{REPLACEMENT}[cut: {len(text)} characters in all]"
    return text


def optional_text(text: str | None, limit: int = MAX_MESSAGE_CHARS) -> str | None:
    """``storable_text`` that lets None through."""
    return None if text is None else storable_text(text, limit)


def storable_json(value: Any, limit: int = MAX_JSON_BYTES) -> Any:
    """A JSON value every database stores, as close to ``value`` as that allows.

    Only JSON types are expected (``serialization.json_result`` decides what
    is JSON).  Text is cleaned as ``storable_text`` does (without the cut),
    non-finite floats become None, nesting deeper than 64 levels becomes a
    note, and a value larger than ``limit`` bytes as JSON becomes a note
    giving its size.
    """
    cleaned, size = _clean(value, 0)
    if size * 12 > limit:  # a character may take twelve bytes once escaped: measure
        exact = len(_encode_json(cleaned))
        if exact > limit:
            return f"{REPLACEMENT}[not stored: {exact} bytes as JSON; the limit is {limit}]"
    return cleaned


def _clean(value: Any, depth: int) -> tuple[Any, int]:
    # Returns the cleaned value and its size in characters, roughly, so that
    # storable_json encodes only the values that may be too large.
    if isinstance(value, str):
        text = value if is_storable_text(value) else _UNSTORABLE.sub(REPLACEMENT, value)
        return text, len(text) + 2
    if isinstance(value, float) and not math.isfinite(value):
        return None, 4
    if depth >= _MAX_DEPTH and isinstance(value, (list, tuple, dict)):
        return f"{REPLACEMENT}[not stored: nested deeper than {_MAX_DEPTH} levels]", 40
    if isinstance(value, (list, tuple)):
        items = [_clean(item, depth + 1) for item in value]
        return [item for item, _ in items], sum(size + 1 for _, size in items) + 2
    if isinstance(value, dict):
        cleaned: dict[str, Any] = {}
        size = 2
        for key, item in value.items():
            name, key_size = _clean(str(key), depth + 1)
            cleaned[name], item_size = _clean(item, depth + 1)
            size += key_size + item_size + 2
        return cleaned, size
    return value, 24  # None, bool, int: as stored; never long


def shown_text(text: str | None) -> str | None:
    """``text`` as a JSON response can carry it: lone surrogates become U+FFFD.

    For values already stored (by an older version, or by another program
    in a database whose JSON is text): a response must never fail on them.
    NUL needs nothing: JSON escapes it.
    """
    if text is None or text.isascii() or _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub(REPLACEMENT, text)


def shown_json(value: Any) -> Any:
    """A JSON value as a response can carry it: text as ``shown_text``, NaN and infinity as None."""
    if isinstance(value, str):
        return shown_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [shown_json(item) for item in value]
    if isinstance(value, dict):
        return {shown_text(str(key)): shown_json(item) for key, item in value.items()}
    return value
