"""Task ids: UUIDs whose leading bits are a millisecond timestamp (RFC 9562 version 7).

Random (version 4) ids scatter every insert across the primary-key index,
one page each; time-ordered ids land on the same few pages, which matters
for SQLite's WAL, PostgreSQL's B-trees and above all InnoDB's clustered key.
They are still ordinary UUID strings.
"""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_counter = 0

# Random bytes are drawn from the OS 4 KiB at a time: one getrandom() call per
# id cost several microseconds on a VM, a noticeable share of add_task().
_POOL_SIZE = 4096
_pool = b""
_pool_at = 0


def _forget_pool() -> None:
    # A forked child must not hand out the same "random" bits as its parent.
    global _pool, _pool_at
    _pool, _pool_at = b"", 0


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forget_pool)


def _random_bytes(count: int) -> bytes:
    """``count`` bytes from the OS's CSPRNG; call with ``_lock`` held."""
    global _pool, _pool_at
    if _pool_at + count > len(_pool):
        _pool, _pool_at = os.urandom(_POOL_SIZE), 0
    chunk = _pool[_pool_at : _pool_at + count]
    _pool_at += count
    return chunk


def new_task_id() -> str:
    """A new version-7 UUID string, monotonic within this process."""
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms, _counter = now_ms, int.from_bytes(_random_bytes(2), "big") & 0x3FF
        else:
            _counter += 1  # same millisecond (or clock went back): keep increasing
            if _counter > 0xFFF:
                _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
        random_part = _random_bytes(8)
    rand = int.from_bytes(random_part, "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
