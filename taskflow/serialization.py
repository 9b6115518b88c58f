"""Task arguments and results to and from storage: the only module that knows encodings.

Arguments that are plain JSON are stored as JSON columns, readable by SQL.
Anything else (tuples, dataclasses, datetimes...) is pickled so it round-trips
exactly, and the JSON columns stay NULL.  With encryption on, the pickle is
encrypted and nothing readable is stored.
"""

from __future__ import annotations

import json
import math
import pickle
from typing import Any, NamedTuple, Protocol

from taskflow.exceptions import PayloadDecryptionError, TaskArgumentError
from taskflow.storable import is_storable_text, storable_json

JSON_FORMAT = "json"
PICKLE_FORMAT = "pickle"
ENCRYPTED_FORMAT = "fernet"
_MAX_DEPTH = 64


class Cipher(Protocol):
    """What encryption needs: Fernet and MultiFernet both fit."""

    def encrypt(self, data: bytes) -> bytes: ...

    def decrypt(self, token: bytes) -> bytes: ...


class EncodedArguments(NamedTuple):
    """Arguments as they go into a row (a named tuple: built once per task, on the hot path)."""

    args: list[Any] | None
    kwargs: dict[str, Any] | None
    payload: bytes | None
    payload_format: str

    @property
    def readable(self) -> bool:
        return self.args is not None


def is_json_value(
    value: Any, depth: int = 0, *, exact: bool = True, any_text: bool = False
) -> bool:
    """True if ``value`` survives a JSON round trip unchanged, types included.

    With ``exact=False``, subclasses of str, int and float count too (an enum
    member becomes its value): good enough for a result shown to people, not
    for arguments, which must reach the function as they were passed.  Text
    some database cannot store (NUL, lone surrogates: see ``storable``) does
    not count, unless ``any_text`` (for results, whose text is cleaned).
    """
    if depth > _MAX_DEPTH:
        return False
    kind = type(value)
    # Exact types first: the common arguments (ids, names, flags) stop here.
    if kind is str:
        return any_text or is_storable_text(value)
    if kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(is_json_value(item, depth + 1, exact=exact, any_text=any_text) for item in value)
    if kind is dict:
        return all(
            (type(key) is str if exact else isinstance(key, str))
            and (any_text or is_storable_text(key))
            and is_json_value(item, depth + 1, exact=exact, any_text=any_text)
            for key, item in value.items()
        )
    if exact:
        return False
    if isinstance(value, str):
        return any_text or is_storable_text(value)
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _all_json(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    # As is_json_value(list(args)) and is_json_value(kwargs), without the copies.
    for item in args:
        if not is_json_value(item, 1):
            return False
    for key, item in kwargs.items():
        if type(key) is not str or not is_storable_text(key) or not is_json_value(item, 1):
            return False
    return True


def encode_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], cipher: Cipher | None = None
) -> EncodedArguments:
    """Choose the storage form of a call's arguments; raise ``TaskArgumentError`` if none fits."""
    if cipher is None and _all_json(args, kwargs):
        return EncodedArguments(list(args), dict(kwargs), None, JSON_FORMAT)
    data = _pickle_arguments(args, kwargs)
    if cipher is not None:
        return EncodedArguments(None, None, cipher.encrypt(data), ENCRYPTED_FORMAT)
    return EncodedArguments(None, None, data, PICKLE_FORMAT)


def check_argument_size(encoded: EncodedArguments, limit: int) -> None:
    """Raise ``TaskArgumentError`` if the stored arguments would take more than ``limit`` bytes.

    Measured as stored: the pickle or ciphertext, or the JSON text of both
    columns.  JSON is encoded only when a cheap upper bound exceeds the limit.
    """
    if encoded.payload is not None:
        size = len(encoded.payload)
    elif _json_size_bound(encoded.args) + _json_size_bound(encoded.kwargs) <= limit:
        return
    else:
        size = len(_stored_json(encoded.args)) + len(_stored_json(encoded.kwargs))
    if size > limit:
        raise TaskArgumentError(
            f"the arguments of this task take {size:,} bytes once stored; this database "
            f"stores at most {limit:,} bytes of arguments per task. Pass a reference "
            "instead (a file path, an object-store key, a row id) and load the data "
            "inside the task"
        )


def _stored_json(value: Any) -> bytes:
    # As the writer encodes JSON columns (ASCII only: escapes count).
    return json.dumps(value, separators=(",", ":")).encode()


def _json_size_bound(value: Any) -> int:
    # At least the JSON text's length: twelve bytes per character covers any
    # escape (a character outside the BMP is two \uXXXX escapes).
    kind = type(value)
    if kind is str:
        return 12 * len(value) + 2
    if kind is list:
        return sum(_json_size_bound(item) + 1 for item in value) + 2
    if kind is dict:
        return sum(12 * len(k) + 4 + _json_size_bound(v) for k, v in value.items()) + 2
    return 32  # a number, a flag or null


def _pickle_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    try:
        return pickle.dumps((tuple(args), dict(kwargs)), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        culprit = _first_unpicklable(args, kwargs)
        raise TaskArgumentError(
            f"cannot store the arguments of this task: {culprit} can be neither JSON-encoded "
            f"nor pickled ({exc}). Tasks are persisted, so pass plain data (ids, strings, "
            "dicts) and load objects such as sessions or open files inside the task"
        ) from exc


def _first_unpicklable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    labelled = [(f"argument {i}", v) for i, v in enumerate(args)]
    labelled += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for label, value in labelled:
        try:
            pickle.dumps(value)
        except Exception:
            return f"{label} ({type(value).__name__})"
    return "an argument"


def decode_arguments(
    args: list[Any] | tuple[Any, ...] | None,
    kwargs: dict[str, Any] | None,
    payload: bytes | None,
    payload_format: str,
    cipher: Cipher | None = None,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's arguments back from their stored form."""
    if payload_format == JSON_FORMAT:
        return tuple(args or ()), dict(kwargs or {})
    if payload is None:
        raise TaskArgumentError(f"stored {payload_format} arguments are missing their payload")
    if payload_format == ENCRYPTED_FORMAT:
        if cipher is None:
            raise PayloadDecryptionError(
                "this task's arguments are encrypted but no encrypt_args_key is configured"
            )
        try:
            payload = cipher.decrypt(payload)
        except Exception as exc:
            raise PayloadDecryptionError(
                "cannot decrypt this task's arguments with any configured key: add the key "
                "they were encrypted with to encrypt_args_key"
            ) from exc
    elif payload_format != PICKLE_FORMAT:
        raise TaskArgumentError(f"unknown payload format {payload_format!r}")
    loaded_args, loaded_kwargs = pickle.loads(payload)
    return tuple(loaded_args), dict(loaded_kwargs)


def json_result(value: Any) -> Any:
    """The value to store as a task's result: its storable form when JSON-able, else None.

    Text a database cannot store is cleaned and an oversized result is
    replaced by a note (see ``storable.storable_json``): a result, unlike an
    argument, is only read, and must not stop the task's final write.
    """
    if value is None:
        return None
    if not is_json_value(value, exact=False, any_text=True):
        return None
    return storable_json(value)


def json_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """A log line's extra fields as stored: each JSON-able one cleaned, any other as its repr."""
    if not extra:
        return extra
    stored = {
        key: value if is_json_value(value, exact=False, any_text=True) else repr(value)
        for key, value in extra.items()
    }
    cleaned: dict[str, Any] = storable_json(stored)  # a dict stays a dict unless oversized
    return cleaned if isinstance(cleaned, dict) else {"extra": cleaned}
