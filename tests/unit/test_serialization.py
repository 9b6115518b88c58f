"""Argument storage: strict JSON when it round-trips, pickle otherwise, Fernet when asked."""

from __future__ import annotations

import math
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum
from typing import Any

import pytest
from cryptography.fernet import Fernet

from taskflow import ConfigurationError, PayloadDecryptionError, TaskArgumentError, TaskManager
from taskflow.security import build_cipher
from taskflow.serialization import (
    ENCRYPTED_FORMAT,
    JSON_FORMAT,
    PICKLE_FORMAT,
    decode_arguments,
    encode_arguments,
    is_json_value,
    json_result,
)


class Color(str, Enum):
    RED = "red"


class Level(IntEnum):
    HIGH = 3


@dataclass(frozen=True)
class Point:
    x: int
    y: int


@dataclass
class Order:
    order_id: int
    placed_at: datetime
    lines: list[tuple[str, int]] = field(default_factory=list)


def round_trip(
    args: tuple[Any, ...], kwargs: dict[str, Any], cipher: Any = None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    encoded = encode_arguments(args, kwargs, cipher)
    return decode_arguments(
        encoded.args, encoded.kwargs, encoded.payload, encoded.payload_format, cipher
    )


# -- strict JSON detection ---------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**70),
        1.5,
        "",
        "héllo ✓",
        [],
        {},
        [1, "a", None, [2.5, {"k": [True]}]],
        {"a": {"b": {"c": [1, 2, 3]}}},
    ],
)
def test_json_values(value: Any) -> None:
    assert is_json_value(value)


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        [1, (2, 3)],
        {"nested": {"deeper": (1,)}},
        math.nan,
        math.inf,
        -math.inf,
        [1.0, math.nan],
        {"x": {"y": math.inf}},
        {1: "a"},
        {"ok": {2: "b"}},
        {None: 1},
        {(1, 2): "t"},
        datetime(2026, 1, 1, tzinfo=timezone.utc),
        [date(2026, 1, 1)],
        {"when": timedelta(seconds=1)},
        Decimal("1.5"),
        b"bytes",
        {1, 2},
        frozenset(),
        Point(1, 2),
        OrderedDict(a=1),
        Color.RED,
        [Level.HIGH],
        {"level": Level.HIGH},
        {Color.RED: 1},
    ],
    ids=repr,
)
def test_values_that_do_not_survive_json(value: Any) -> None:
    assert not is_json_value(value)


def test_enum_arguments_come_back_as_the_same_members() -> None:
    """A str or int enum would come back from JSON as a plain str or int: it is pickled."""
    encoded = encode_arguments((Color.RED,), {"level": Level.HIGH})
    assert encoded.payload_format == PICKLE_FORMAT
    args, kwargs = decode_arguments(
        encoded.args, encoded.kwargs, encoded.payload, encoded.payload_format
    )
    assert args == (Color.RED,) and type(args[0]) is Color
    assert kwargs == {"level": Level.HIGH} and type(kwargs["level"]) is Level


def test_very_deep_nesting_is_not_json() -> None:
    value: Any = 1
    for _ in range(200):
        value = [value]
    assert not is_json_value(value)


def test_json_arguments_are_stored_readably() -> None:
    encoded = encode_arguments((1, "two", [3.0]), {"flag": True, "meta": {"k": None}})
    assert encoded.payload_format == JSON_FORMAT
    assert encoded.readable
    assert encoded.payload is None
    assert encoded.args == [1, "two", [3.0]]
    assert encoded.kwargs == {"flag": True, "meta": {"k": None}}
    assert round_trip((1, "two", [3.0]), {"flag": True}) == ((1, "two", [3.0]), {"flag": True})


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((1, 2), {"coords": (1, 2)}),
        ((math.nan,), {}),
        (({1: "one"},), {}),
        ((datetime(2026, 5, 1, 12, 30, tzinfo=timezone.utc),), {}),
        ((), {"nested": [{"deep": (1, 2)}]}),
    ],
)
def test_any_non_json_argument_switches_to_pickle(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    encoded = encode_arguments(args, kwargs)
    assert encoded.payload_format == PICKLE_FORMAT
    assert not encoded.readable
    assert encoded.args is None and encoded.kwargs is None
    assert isinstance(encoded.payload, bytes)


# -- pickle round trips --------------------------------------------------------


def test_pickle_round_trip_is_exact() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone(timedelta(hours=2)))
    args = ((1, (2, 3)), moment, Point(1, 2), {1: "int key"}, math.inf)
    kwargs = {
        "order": Order(7, moment, [("sku", 2)]),
        "when": date(2026, 1, 2),
        "amount": Decimal("10.50"),
        "tags": frozenset({"a", "b"}),
    }
    got_args, got_kwargs = round_trip(args, kwargs)
    assert got_args == args
    assert got_kwargs == kwargs
    assert type(got_args[0]) is tuple and type(got_args[0][1]) is tuple
    assert got_args[1].tzinfo == timezone(timedelta(hours=2))
    assert type(got_args[2]) is Point
    assert type(got_kwargs["order"]) is Order
    assert type(got_kwargs["order"].lines[0]) is tuple
    assert type(got_kwargs["amount"]) is Decimal


def test_nan_round_trips_through_pickle() -> None:
    (value,), _ = round_trip((math.nan,), {})
    assert math.isnan(value)


def test_empty_arguments_round_trip() -> None:
    assert round_trip((), {}) == ((), {})


# -- unpicklable arguments -----------------------------------------------------


def test_lambda_argument_is_named() -> None:
    with pytest.raises(TaskArgumentError) as info:
        encode_arguments((1, lambda: None), {})
    assert "argument 1 (function)" in str(info.value)


def test_lock_keyword_argument_is_named() -> None:
    with pytest.raises(TaskArgumentError) as info:
        encode_arguments(("ok",), {"guard": threading.Lock()})
    assert "keyword argument 'guard' (lock)" in str(info.value)


def test_open_socket_argument_is_named() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(TaskArgumentError) as info:
            encode_arguments((), {"conn": sock})
    finally:
        sock.close()
    message = str(info.value)
    assert "keyword argument 'conn' (socket)" in message
    assert "pass plain data" in message  # says what to do


def test_unpicklable_value_nested_in_a_container_is_attributed() -> None:
    with pytest.raises(TaskArgumentError) as info:
        encode_arguments((1, [2, {"lock": threading.Lock()}]), {})
    assert "argument 1 (list)" in str(info.value)


def test_unpicklable_error_is_a_value_error_chained_to_the_cause() -> None:
    with pytest.raises(TaskArgumentError) as info:
        encode_arguments((threading.Lock(),), {})
    assert isinstance(info.value, ValueError)
    assert info.value.__cause__ is not None


def test_unpicklable_argument_is_rejected_even_with_encryption() -> None:
    cipher = build_cipher(Fernet.generate_key())
    with pytest.raises(TaskArgumentError, match="argument 0"):
        encode_arguments((threading.Lock(),), {}, cipher)


# -- encryption ----------------------------------------------------------------


def test_encrypted_arguments_are_unreadable_and_round_trip() -> None:
    cipher = build_cipher(Fernet.generate_key())
    secret = "card-4242-4242-4242-4242"
    encoded = encode_arguments((secret,), {"amount": 10}, cipher)
    assert encoded.payload_format == ENCRYPTED_FORMAT
    assert not encoded.readable
    assert encoded.args is None and encoded.kwargs is None
    assert encoded.payload is not None and secret.encode() not in encoded.payload
    assert round_trip((secret, (1, 2)), {"amount": 10}, cipher) == (
        (secret, (1, 2)),
        {"amount": 10},
    )


def test_key_given_as_str_or_bytes() -> None:
    key = Fernet.generate_key()
    for given in (key, key.decode()):
        cipher = build_cipher(given)
        assert round_trip(("x",), {}, cipher) == (("x",), {})


def test_multifernet_rotation() -> None:
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    old = build_cipher(old_key)
    rotated = build_cipher([new_key, old_key])  # first key encrypts, all decrypt
    only_new = build_cipher(new_key)

    written_before = encode_arguments(("before",), {}, old)
    assert decode_arguments(
        None, None, written_before.payload, written_before.payload_format, rotated
    ) == (("before",), {})

    written_after = encode_arguments(("after",), {}, rotated)
    assert decode_arguments(
        None, None, written_after.payload, written_after.payload_format, only_new
    ) == (("after",), {})
    with pytest.raises(PayloadDecryptionError):
        decode_arguments(None, None, written_after.payload, written_after.payload_format, old)


def test_wrong_key_raises_payload_decryption_error() -> None:
    encoded = encode_arguments(("secret",), {}, build_cipher(Fernet.generate_key()))
    wrong = build_cipher(Fernet.generate_key())
    with pytest.raises(PayloadDecryptionError, match="encrypt_args_key") as info:
        decode_arguments(None, None, encoded.payload, encoded.payload_format, wrong)
    assert isinstance(info.value, ValueError)


def test_encrypted_payload_without_key_raises_payload_decryption_error() -> None:
    encoded = encode_arguments(("secret",), {}, build_cipher(Fernet.generate_key()))
    with pytest.raises(PayloadDecryptionError, match="no encrypt_args_key"):
        decode_arguments(None, None, encoded.payload, encoded.payload_format, None)


def test_corrupted_ciphertext_raises_payload_decryption_error() -> None:
    cipher = build_cipher(Fernet.generate_key())
    encoded = encode_arguments(("secret",), {}, cipher)
    assert encoded.payload is not None
    tampered = encoded.payload[:-4] + b"AAAA"
    with pytest.raises(PayloadDecryptionError):
        decode_arguments(None, None, tampered, encoded.payload_format, cipher)


@pytest.mark.parametrize("key", ["not-a-key", b"short", []])
def test_invalid_keys_are_configuration_errors(key: Any) -> None:
    with pytest.raises(ConfigurationError):
        build_cipher(key)


def test_manager_builds_its_cipher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKFLOW_DATABASE_URL", raising=False)
    assert TaskManager().fernet is None
    key1, key2 = Fernet.generate_key(), Fernet.generate_key()
    single = TaskManager(encrypt_args_key=key1).fernet
    assert round_trip(("x",), {}, single) == (("x",), {})
    rotated = TaskManager(encrypt_args_key=[key2, key1]).fernet
    token = encode_arguments(("y",), {}, single).payload
    assert decode_arguments(None, None, token, ENCRYPTED_FORMAT, rotated) == (("y",), {})
    with pytest.raises(ConfigurationError):
        TaskManager(encrypt_args_key="garbage")


# -- malformed stored forms ------------------------------------------------------


def test_unknown_payload_format_is_an_error() -> None:
    with pytest.raises(TaskArgumentError, match="unknown payload format"):
        decode_arguments(None, None, b"...", "msgpack")


def test_missing_payload_is_an_error() -> None:
    with pytest.raises(TaskArgumentError, match="missing"):
        decode_arguments(None, None, None, PICKLE_FORMAT)


def test_json_decoding_returns_tuple_and_dict() -> None:
    assert decode_arguments([1, 2], {"a": 1}, None, JSON_FORMAT) == ((1, 2), {"a": 1})
    assert decode_arguments(None, None, None, JSON_FORMAT) == ((), {})


# -- results -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ({"sent": 3}, {"sent": 3}),
        ([1, "a"], [1, "a"]),
        ("done", "done"),
        (None, None),
        ((1, 2), None),
        (math.nan, None),
        (datetime(2026, 1, 1, tzinfo=timezone.utc), None),
        (Point(1, 2), None),
        (Color.RED, "red"),  # a result is shown, not passed on: the value is enough
        ({"level": Level.HIGH}, {"level": 3}),
    ],
    ids=repr,
)
def test_results_are_stored_only_when_json(value: Any, stored: Any) -> None:
    assert json_result(value) == stored
