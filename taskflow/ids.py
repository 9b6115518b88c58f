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


def new_task_id() -> str:
    """A new version-7 UUID string, monotonic within this process."""
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms, _counter = now_ms, int.from_bytes(os.urandom(2), "big") & 0x3FF
        else:
            _counter += 1  # same millisecond (or clock went back): keep increasing
            if _counter > 0xFFF:
                _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
