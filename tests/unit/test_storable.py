"""What taskflow stores for text and JSON a database would refuse; how a refused batch is cut."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from taskflow.exceptions import TaskArgumentError
from taskflow.models import TaskLogEntry, TaskRecord, TaskStatus, utcnow
from taskflow.repository.base import WriteBatch
from taskflow.runtime.records import check_key, check_tags
from taskflow.runtime.splitter import _halves, failed_instead
from taskflow.serialization import (
    PICKLE_FORMAT,
    check_argument_size,
    encode_arguments,
    json_extra,
    json_result,
)
from taskflow.storable import (
    MAX_MESSAGE_CHARS,
    REPLACEMENT,
    is_storable_text,
    shown_json,
    storable_json,
    storable_text,
)


@pytest.mark.parametrize(
    ("text", "storable"),
    [("plain", True), ("é ü 日本", True), ("😀", True), ("a\x00", False), ("\ud800", False)],
)
def test_storable_text_is_text_without_nul_or_lone_surrogates(text: str, storable: bool) -> None:
    assert is_storable_text(text) is storable


def test_unstorable_characters_become_the_replacement_character() -> None:
    assert storable_text("a\x00b\udc80c😀") == f"a{REPLACEMENT}b{REPLACEMENT}c😀"


def test_long_text_is_cut_with_its_full_length() -> None:
    cut = storable_text("x" * (MAX_MESSAGE_CHARS + 5))
    assert cut.startswith("x" * MAX_MESSAGE_CHARS)
    assert cut.endswith(f"[cut: {MAX_MESSAGE_CHARS + 5} characters in all]")


def test_json_is_cleaned_deeply_keys_included() -> None:
    value = {"k\x00": ["\ud800", float("nan"), float("inf"), 1.5, True, None, {"n": 1}]}
    assert storable_json(value) == {
        f"k{REPLACEMENT}": [REPLACEMENT, None, None, 1.5, True, None, {"n": 1}]
    }


def test_oversized_json_becomes_a_note_giving_its_size() -> None:
    assert (
        storable_json("x" * 100, limit=50)
        == f"{REPLACEMENT}[not stored: 102 bytes as JSON; the limit is 50]"
    )
    assert storable_json("x" * 10, limit=50) == "x" * 10


def test_results_are_cleaned_and_non_json_results_are_none() -> None:
    assert json_result("a\x00") == f"a{REPLACEMENT}"
    assert json_result(float("nan")) is None
    assert json_result(object()) is None
    assert json_result({"ok": [1, 2]}) == {"ok": [1, 2]}


def test_log_extra_keeps_json_and_shows_the_rest_as_repr() -> None:
    assert json_extra({"n": 1, "s": "\ud800", "o": {1, 2}}) == {
        "n": 1,
        "s": REPLACEMENT,
        "o": "{1, 2}",
    }


@pytest.mark.parametrize("value", ["a\x00b", "\ud800", {"\udfff": 1}, [b"\xff"], float("nan")])
def test_unstorable_arguments_are_pickled_and_arrive_exactly(value: Any) -> None:
    encoded = encode_arguments((value,), {"k": value})
    assert encoded.payload_format == PICKLE_FORMAT and encoded.args is None
    assert encoded.payload is not None
    args, kwargs = pickle.loads(encoded.payload)
    assert repr(args) == repr((value,)) and repr(kwargs) == repr({"k": value})


def test_arguments_over_the_limit_are_refused_with_the_limit() -> None:
    small = encode_arguments(("x" * 100,), {})
    check_argument_size(small, 1000)
    with pytest.raises(TaskArgumentError, match="stores at most 1,000 bytes"):
        check_argument_size(encode_arguments(("x" * 1000,), {}), 1000)
    with pytest.raises(TaskArgumentError, match="take 2,0"):
        check_argument_size(encode_arguments((b"x" * 2000,), {}), 1000)


def test_tags_are_cleaned_and_keys_that_cannot_be_stored_refused() -> None:
    assert check_tags({"a\x00": "\ud800", "n": 3}) == {f"a{REPLACEMENT}": REPLACEMENT, "n": "3"}
    with pytest.raises(TaskArgumentError, match="idempotency_key"):
        check_key("key\x00")


def test_responses_show_lone_surrogates_and_non_finite_floats_safely() -> None:
    shown = shown_json({"\ud800": [float("nan"), "ok\x00", 2]})
    assert shown == {REPLACEMENT: [None, "ok\x00", 2]}


def record(n: int) -> TaskRecord:
    return TaskRecord(task_id=f"t{n}", func_name="f", status=TaskStatus.RUNNING)


def test_a_refused_batch_is_halved_in_order() -> None:
    logs = [TaskLogEntry(f"t{n}", 0, "info", "line", utcnow()) for n in range(3)]
    batch = WriteBatch(inserts=[record(0), record(1)], updates=[record(2)], logs=logs)
    first, second = _halves(batch)
    assert [r.task_id for r in first.inserts] == ["t0", "t1"] and not first.logs
    assert [r.task_id for r in first.updates] == ["t2"]
    assert not second.inserts and not second.updates and second.logs == logs
    third, fourth = _halves(first)
    assert [r.task_id for r in third.inserts] == ["t0"] and not third.updates
    assert [r.task_id for r in fourth.inserts] == ["t1"] and len(fourth.updates) == 1


def test_a_state_that_cannot_be_stored_becomes_failed_saying_why() -> None:
    running = record(1)
    running.owner = "me"
    running.result = "\ud800"
    failed = failed_instead(running, ValueError("refused \x00 value"))
    assert failed.status is TaskStatus.FAILED and failed.owner is None and failed.result is None
    assert failed.error is not None and "could not store this task's running state" in failed.error
    assert is_storable_text(failed.error)
    assert running.status is TaskStatus.RUNNING  # the live record is left alone
