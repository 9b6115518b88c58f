"""The retry policy: waits (backoff, cap, jitter), which errors retry, decoration-time checks."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from taskflow import RegistrationError, TaskConfig, TaskManager
from taskflow.runtime.retry import LONGEST_WAIT_S, RetryPolicy, exception_tuple
from taskflow.settings import ENV_DATABASE_URL


class GatewayError(ConnectionError):
    """A subclass: matched by ``retry_on=ConnectionError``."""


def job() -> None:
    return None


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> TaskManager:
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)
    return TaskManager()


def waits(policy: RetryPolicy, count: int, rng: random.Random | None = None) -> list[float]:
    rng = rng or random.Random(0)
    return [policy.delay_for(attempt, rng) for attempt in range(count)]


# -- waits ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delay", "backoff", "expected"),
    [
        (0.0, 1.0, [0.0, 0.0, 0.0, 0.0]),
        (1.0, 2.0, [1.0, 2.0, 4.0, 8.0]),
        (0.5, 1.5, [0.5, 0.75, 1.125, 1.6875]),
        # delay * backoff ** n, not n multiplications: 0.1 * 3 * 3 would be 0.9000000000000001.
        (0.1, 3, [0.1, 0.30000000000000004, 0.9, 2.7]),
    ],
)
def test_without_cap_or_jitter_the_waits_are_the_old_numbers(
    delay: float, backoff: float, expected: list[float]
) -> None:
    rng = random.Random(1)
    state = rng.getstate()
    assert waits(RetryPolicy(retries=4, delay=delay, backoff=backoff), 4, rng) == expected
    assert rng.getstate() == state  # no jitter: no randomness drawn


def test_max_delay_caps_the_growth() -> None:
    policy = RetryPolicy(retries=6, delay=1.0, backoff=2.0, max_delay=5.0)
    assert waits(policy, 6) == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_max_delay_holds_where_the_power_overflows_a_float() -> None:
    with pytest.raises(OverflowError):
        _ = 2.0**5000  # what an uncapped wait meets this far
    capped = RetryPolicy(delay=1.0, backoff=2.0, max_delay=60.0)
    assert capped.delay_for(5000, random.Random()) == 60.0
    assert RetryPolicy(delay=0.0, backoff=2.0, max_delay=60.0).delay_for(5000, random.Random()) == 0


def test_without_max_delay_a_wait_stops_at_a_storable_length() -> None:
    # delay=1, backoff=10: the 13th retry would wait 1e13 s, past year 9999.
    policy = RetryPolicy(retries=20, delay=1.0, backoff=10.0)
    assert policy.delay_for(3, random.Random()) == 1000.0
    assert policy.delay_for(13, random.Random()) == LONGEST_WAIT_S
    assert policy.delay_for(5000, random.Random()) == LONGEST_WAIT_S  # the power overflows
    run_at = datetime.now(timezone.utc) + timedelta(seconds=LONGEST_WAIT_S)
    assert run_at.year < 9999


def test_full_jitter_is_uniform_below_the_capped_wait() -> None:
    policy = RetryPolicy(delay=10.0, jitter="full")
    assert waits(policy, 2, random.Random(42)) == [6.394267984578837, 0.25010755222666936]


def test_equal_jitter_keeps_half_the_wait() -> None:
    policy = RetryPolicy(delay=10.0, jitter="equal")
    assert waits(policy, 2, random.Random(42)) == [8.19713399228942, 5.125053776113335]


@pytest.mark.parametrize(("jitter", "low"), [("full", 0.0), ("equal", 2.5)])
def test_jitter_applies_after_the_cap(jitter: Any, low: float) -> None:
    # Uncapped, attempt 10 would wait 1024 s; capped and spread, it stays within [low, 5].
    policy = RetryPolicy(delay=1.0, backoff=2.0, max_delay=5.0, jitter=jitter)
    rng = random.Random(7)
    drawn = [policy.delay_for(10, rng) for _ in range(500)]
    assert all(low <= wait <= 5.0 for wait in drawn)
    assert max(drawn) > 4.5 and min(drawn) < low + 0.5  # spread over the whole range
    assert len(set(drawn)) == len(drawn)


# -- which errors retry ---------------------------------------------------------------


def test_by_default_every_exception_retries_while_retries_remain() -> None:
    policy = RetryPolicy(retries=2)
    assert policy.should_retry(ValueError("bad"), 0)
    assert policy.should_retry(KeyError("k"), 1)
    assert not policy.should_retry(ValueError("bad"), 2)  # both retries used
    assert not RetryPolicy(retries=0, retry_on=(ValueError,)).should_retry(ValueError(), 0)


def test_retry_on_matches_subclasses_and_nothing_else() -> None:
    policy = RetryPolicy(retries=3, retry_on=(ConnectionError, TimeoutError))
    assert policy.should_retry(ConnectionError(), 0)
    assert policy.should_retry(GatewayError(), 0)
    assert policy.should_retry(TimeoutError("ran longer than its timeout"), 0)
    assert not policy.should_retry(ValueError(), 0)
    assert not policy.should_retry(RuntimeError(), 0)


def test_dont_retry_on_wins_over_retry_on() -> None:
    policy = RetryPolicy(retries=3, retry_on=(OSError,), dont_retry_on=(FileNotFoundError,))
    assert policy.should_retry(PermissionError(), 0)
    assert not policy.should_retry(FileNotFoundError(), 0)
    assert not policy.should_retry(ValueError(), 0)  # not in retry_on at all


def test_dont_retry_on_alone_retries_everything_else() -> None:
    policy = RetryPolicy(retries=1, dont_retry_on=(KeyError,))
    assert policy.should_retry(ValueError(), 0)
    assert not policy.should_retry(KeyError("k"), 0)
    assert not policy.should_retry(type("MissingKey", (KeyError,), {})(), 0)


def test_a_task_timeout_is_matched_as_timeout_error() -> None:
    # The runner records a timeout as TimeoutError: only lists that name it retry it.
    timeout = TimeoutError("the task ran longer than its timeout of 1s")
    assert not RetryPolicy(retries=1, retry_on=(ConnectionError,)).should_retry(timeout, 0)
    assert not RetryPolicy(retries=1, dont_retry_on=(TimeoutError,)).should_retry(timeout, 0)
    assert RetryPolicy(retries=1, dont_retry_on=(ValueError,)).should_retry(timeout, 0)


def test_from_config_takes_single_classes_and_the_rows_count() -> None:
    config = TaskConfig(
        retries=5, delay=2.0, max_delay=9.0, retry_on=OSError, dont_retry_on=FileNotFoundError
    )
    policy = RetryPolicy.from_config(config, retries=1)
    assert policy == RetryPolicy(
        retries=1,
        delay=2.0,
        max_delay=9.0,
        retry_on=(OSError,),
        dont_retry_on=(FileNotFoundError,),
    )
    assert RetryPolicy.from_config(TaskConfig(retries=2)) == RetryPolicy(retries=2)
    assert exception_tuple(None) == ()
    assert exception_tuple((KeyError, ValueError)) == (KeyError, ValueError)


# -- checks when the decorator runs ----------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_delay": -1}, "max_delay must be >= 0, got -1"),
        ({"max_delay": math.inf}, "max_delay must be a finite number >= 0, got inf"),
        ({"max_delay": math.nan}, "max_delay must be a finite number >= 0, got nan"),
        ({"max_delay": "30"}, "max_delay must be a number, got '30'"),
        ({"max_delay": True}, "max_delay must be a number, got True"),
        ({"delay": 10, "max_delay": 5}, "max_delay=5 is below delay=10"),
        ({"jitter": "random"}, "jitter must be 'full', 'equal' or None (no jitter), got 'random'"),
        ({"jitter": True}, "jitter must be 'full', 'equal' or None (no jitter), got True"),
        ({"retry_on": "ValueError"}, "retry_on takes an exception class or a tuple of them"),
        ({"retry_on": [ValueError]}, "retry_on takes an exception class or a tuple of them"),
        ({"retry_on": ValueError("x")}, "retry_on takes an exception class or a tuple of them"),
        ({"retry_on": (ValueError, int)}, "as except does (e.g. retry_on=(ConnectionError"),
        ({"dont_retry_on": dict}, "dont_retry_on takes an exception class or a tuple of them"),
        ({"retry_on": KeyboardInterrupt}, "retry_on takes subclasses of Exception"),
        ({"dont_retry_on": asyncio.CancelledError}, "CancelledError is not one"),
        ({"retry_on": ()}, "retry_on=() would retry nothing: pass None to retry every exception"),
        (
            {"retry_on": (ValueError, KeyError), "dont_retry_on": KeyError},
            "KeyError is in both retry_on and dont_retry_on",
        ),
    ],
)
def test_invalid_retry_options_say_what_to_pass(
    manager: TaskManager, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(RegistrationError) as info:
        manager.task(retries=3, **options)(job)
    assert message in str(info.value)
    assert "job" not in manager.registry
    with pytest.raises(RegistrationError) as info:
        manager.schedule(every=60, retries=3, **options)(job)
    assert message in str(info.value)
    assert "job" not in manager.registry


@pytest.mark.parametrize(
    "options",
    [
        {"retries": 0, "retry_on": ConnectionError},  # accepted: it just never retries
        {"retries": 3, "delay": 1.0, "max_delay": 1.0},
        {"retries": 3, "max_delay": 0},
        {"retries": 3, "delay": 0.5, "backoff": 2.0, "max_delay": 30, "jitter": "full"},
        {"retries": 3, "jitter": "equal", "dont_retry_on": ()},
        {"retries": 3, "retry_on": OSError, "dont_retry_on": (FileNotFoundError, PermissionError)},
        {"retries": 3, "retry_on": (GatewayError, TimeoutError)},
    ],
)
def test_valid_retry_options_are_registered(manager: TaskManager, options: dict[str, Any]) -> None:
    assert manager.task(**options)(job) is job
    assert manager.registry.for_function(job).config == TaskConfig(**options)


def test_schedule_passes_the_retry_options_to_its_task(manager: TaskManager) -> None:
    manager.schedule(
        every=60,
        retries=2,
        delay=1.0,
        backoff=3.0,
        max_delay=4.0,
        jitter="equal",
        retry_on=ConnectionError,
        dont_retry_on=(GatewayError,),
    )(job)
    config = manager.registry.for_function(job).config
    policy = RetryPolicy.from_config(config)
    assert policy == RetryPolicy(
        retries=2,
        delay=1.0,
        backoff=3.0,
        max_delay=4.0,
        jitter="equal",
        retry_on=(ConnectionError,),
        dont_retry_on=(GatewayError,),
    )
    assert policy.should_retry(ConnectionResetError(), 0)
    assert not policy.should_retry(GatewayError(), 0)
