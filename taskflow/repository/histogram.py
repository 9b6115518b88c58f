"""The duration histogram every backend's statistics use: buckets and the percentile read from them.

The metrics must come out the same whichever store keeps them, so the
bucketing of a duration and the nearest-rank percentile over the buckets
live here, in plain Python, rather than in one backend: the SQL roll-up
(``repository/sql/stats.py``, ``metrics_query.py``) and the Redis statistics
hashes both put a duration in ``bucket_of()``'s bucket and read p95 with
``percentile()``.

Buckets are log-linear, 16 per doubling of ``duration_ms`` (the exponent and
the top four bits of the mantissa, as in HDR histograms): computed exactly
from the float, never through a logarithm, so every writer puts a duration
in the same bucket.  A bucket spans at most 1/16 of its lower bound, and a
percentile read from it is within ``P95_RELATIVE_ERROR`` of the true value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# Finished runs whose durations the metrics describe; other statuses are only counted.
TIMED = ("success", "failed")
BUCKETS_PER_DOUBLING = 16
NO_DURATION = -1
# Durations below 2**-10 ms (about a microsecond), zero included, share bucket 0.
_SMALLEST_EXPONENT = -9
P95_RELATIVE_ERROR = 1 / (2 * BUCKETS_PER_DOUBLING)


def bucket_of(duration_ms: float | None) -> int:
    """The histogram bucket of a duration; ``NO_DURATION`` (-1) for none."""
    if duration_ms is None or not math.isfinite(duration_ms):
        return NO_DURATION
    mantissa, exponent = math.frexp(duration_ms)  # duration = mantissa * 2**exponent
    if exponent < _SMALLEST_EXPONENT or mantissa <= 0:
        return 0
    # mantissa is in [0.5, 1): (mantissa - 0.5) * 32 is exact, its integer part 0..15.
    step = int((mantissa - 0.5) * 2 * BUCKETS_PER_DOUBLING)
    return (exponent - _SMALLEST_EXPONENT) * BUCKETS_PER_DOUBLING + step + 1


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """The [low, high) range of durations (ms) in a bucket of ``bucket_of``."""
    if bucket <= 0:
        return 0.0, math.ldexp(0.5, _SMALLEST_EXPONENT)
    exponent, step = divmod(bucket - 1, BUCKETS_PER_DOUBLING)
    exponent += _SMALLEST_EXPONENT
    width = 2 * BUCKETS_PER_DOUBLING
    return (
        math.ldexp(0.5 + step / width, exponent),
        math.ldexp(0.5 + (step + 1) / width, exponent),
    )


def percentile_in_bucket(
    bucket: int, count: int, low: float | None, high: float | None, seen: int, rank: int
) -> float:
    """The value (ms) of the ``rank``-th task, ``seen`` tasks lying in lower buckets.

    The bucket's first task is its min and its last its max; in between, the
    middle of [min, max]: within half a bucket of the true value.
    """
    lower, upper = bucket_bounds(bucket)
    low = lower if low is None else low
    high = upper if high is None else high
    if rank == seen + 1:
        return float(low)
    if rank == seen + count:
        return float(high)
    return (low + high) / 2.0


def percentile(cells: Sequence[tuple[int, Sequence[Any]]], percent: int) -> float | None:
    """Nearest-rank percentile (ms) over ``(bucket, [count, min, max])`` in bucket order."""
    total = sum(cell[0] for _, cell in cells)
    if total <= 0:
        return None
    rank = -(-percent * total // 100)  # ceil(percent% of total), 1-based
    seen = 0
    for bucket, (count, low, high) in cells:
        if seen + count >= rank:
            return percentile_in_bucket(bucket, count, low, high, seen, rank)
        seen += count
    return None
