"""Task ids: RFC 9562 version-7 UUID strings, time-ordered and monotonic within a process."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from itertools import pairwise

import pytest

from taskflow.ids import new_task_id

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_format_is_a_lowercase_uuid_string() -> None:
    task_id = new_task_id()
    assert isinstance(task_id, str)
    assert len(task_id) == 36
    assert UUID_RE.match(task_id), task_id
    assert str(uuid.UUID(task_id)) == task_id


def test_version_and_variant_bits() -> None:
    for _ in range(1000):
        parsed = uuid.UUID(new_task_id())
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert (parsed.int >> 76) & 0xF == 0x7
        assert (parsed.int >> 62) & 0b11 == 0b10


def test_leading_bits_are_the_unix_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    stamp = uuid.UUID(new_task_id()).int >> 80
    after = time.time_ns() // 1_000_000
    # A burst may run the embedded clock a few milliseconds ahead, never behind.
    assert before <= stamp <= after + 50


def test_monotonic_over_100k_ids() -> None:
    ids = [new_task_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    # Fixed-width lowercase hex: string order is numeric order.
    assert all(a < b for a, b in pairwise(ids))
    ints = [uuid.UUID(i).int for i in ids]
    assert all(a < b for a, b in pairwise(ints))


def test_embedded_time_stays_close_to_the_clock_under_a_burst() -> None:
    start = time.time_ns() // 1_000_000
    last = ""
    for _ in range(50_000):
        last = new_task_id()
    end = time.time_ns() // 1_000_000
    # The 12-bit counter overflows into the next millisecond; it must not run far ahead.
    assert uuid.UUID(last).int >> 80 <= end + 50
    assert uuid.UUID(last).int >> 80 >= start


def test_unique_and_ordered_per_thread_across_threads() -> None:
    per_thread: list[list[str]] = [[] for _ in range(4)]

    def produce(out: list[str]) -> None:
        for _ in range(5_000):
            out.append(new_task_id())

    threads = [threading.Thread(target=produce, args=(out,)) for out in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for out in per_thread for i in out]
    assert len(set(everything)) == len(everything)
    for out in per_thread:
        assert out == sorted(out)


def test_random_tail_differs_between_ids() -> None:
    tails = {new_task_id()[-12:] for _ in range(1000)}
    assert len(tails) == 1000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_does_not_reuse_the_parents_random_bits() -> None:
    from taskflow import ids

    new_task_id()  # the parent now holds a pool of random bytes
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next random bytes and leave at once
        with ids._lock:
            os.write(write_end, ids._random_bytes(16))
        os._exit(0)
    os.close(write_end)
    from_child = os.read(read_end, 64)
    os.waitpid(pid, 0)
    os.close(read_end)
    with ids._lock:
        from_parent = ids._random_bytes(16)
    # Without a fresh draw in the child both would be the pool's next 16 bytes.
    assert len(from_child) == 16
    assert from_child != from_parent
