"""Task arguments and results to and from storage: the only module that knows encodings.

Arguments that are plain JSON are stored as JSON columns, readable by SQL.
Anything else (tuples, dataclasses, datetimes...) is pickled so it round-trips
exactly, and the JSON columns stay NULL.  With encryption on, the pickle is
encrypted and nothing readable is stored.
"""

from __future__ import annotations

import math
import pickle
from typing import Any, NamedTuple, Protocol

from taskflow.exceptions import PayloadDecryptionError, TaskArgumentError

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


def is_json_value(value: Any, depth: int = 0, *, exact: bool = True) -> bool:
    """True if ``value`` survives a JSON round trip unchanged, types included.

    With ``exact=False``, subclasses of str, int and float count too (an enum
    member becomes its value): good enough for a result shown to people, not
    for arguments, which must reach the function as they were passed.
    """
    if depth > _MAX_DEPTH:
        return False
    kind = type(value)
    # Exact types first: the common arguments (ids, names, flags) stop here.
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(is_json_value(item, depth + 1, exact=exact) for item in value)
    if kind is dict:
        return all(
            (type(key) is str if exact else isinstance(key, str))
            and is_json_value(item, depth + 1, exact=exact)
            for key, item in value.items()
        )
    if exact:
        return False
    if isinstance(value, (str, int)):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _all_json(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    # As is_json_value(list(args)) and is_json_value(kwargs), without the copies.
    for item in args:
        if not is_json_value(item, 1):
            return False
    for key, item in kwargs.items():
        if type(key) is not str or not is_json_value(item, 1):
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
    """The value to store as a task's result: itself when JSON-able, else None."""
    return value if is_json_value(value, exact=False) else None
