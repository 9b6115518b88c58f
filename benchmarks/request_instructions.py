"""Machine instructions per request, counted by valgrind: a noise-free view of request_overhead.py.

On a shared 2-core VM the timed benchmark moves by 5% or more from one run
to the next, which is as large as the changes worth making to the hot path.
Instructions executed do not depend on how fast the machine runs, except
through the size of the group commits (printed at the end), so this script
counts them with callgrind for the same two apps (plain
``BackgroundTasks`` and taskflow, durable on a SQLite file) and prints
their ratio.

    python benchmarks/request_instructions.py          # needs valgrind on PATH

The dispatcher's idle polls and the heartbeats are set to once an hour:
they follow the wall clock, not the requests.  Each app is run twice under
valgrind, for a short and a long run; the difference divided by the
difference in requests is the cost of one request, with start-up and
shutdown subtracted out.

What it does not show: time spent waiting in system calls (the WAL writes)
and cache misses.  So it complements the timed ratio rather than replacing
it.  Valgrind runs the program about 50 times slower, so the group-commit
interval is stretched (``--commit-interval``, 0.15 s) so that a
commit then gathers about as many tasks as at full speed, and the script
prints how many it saw, to compare with a normal run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTED = re.compile(r"Collected : (\d+)")
COMMITS = re.compile(r"commits=(\d+) tasks=(\d+)")


def child(system: str, requests: int, commit_interval: float, concurrency: int) -> None:
    """One measured process: drive ``requests`` requests through one app."""
    sys.path.insert(0, os.path.dirname(HERE))
    from benchmarks.request_overhead import measure_plain, measure_taskflow
    from taskflow.repository.sql import sqlite_writer

    commits = 0
    apply = sqlite_writer.SqliteInlineWriter.apply

    async def counted_apply(self: sqlite_writer.SqliteInlineWriter, *args: object) -> object:
        nonlocal commits
        commits += 1
        return await apply(self, *args)  # type: ignore[arg-type]

    sqlite_writer.SqliteInlineWriter.apply = counted_apply  # type: ignore[method-assign]
    quiet_background_work()
    if system == "plain":
        asyncio.run(measure_plain(requests, concurrency, False))
    else:
        _, done = asyncio.run(measure_taskflow(requests, concurrency, False, commit_interval))
        print(f"commits={commits} tasks={done}")


def quiet_background_work() -> None:
    """Idle polls and heartbeats only every hour, so that they are not counted as requests.

    Their number follows the wall clock, which valgrind stretches about 50
    times, and by more when the machine is busy: a few hundred extra claim
    queries over a run would show up as tens of thousands of instructions
    per request, and differ from one run to the next.
    """
    import functools

    from taskflow import TaskManager

    init = TaskManager.__init__

    @functools.wraps(init)
    def quiet_init(self: TaskManager, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("poll_interval", 3600.0)
        kwargs.setdefault("lease_seconds", 3600.0)
        init(self, *args, **kwargs)

    TaskManager.__init__ = quiet_init  # type: ignore[method-assign]


def count(system: str, requests: int, commit_interval: float, concurrency: int) -> tuple[int, str]:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        system,
        "--requests",
        str(requests),
        "--commit-interval",
        str(commit_interval),
        "--concurrency",
        str(concurrency),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = COLLECTED.search(done.stderr)
    if found is None:
        raise SystemExit(f"callgrind printed no instruction count:\n{done.stderr[-2000:]}")
    return int(found.group(1)), done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=300, help="requests in the short run")
    parser.add_argument("--long", type=int, default=1300, help="requests in the long run")
    parser.add_argument("--commit-interval", type=float, default=0.15)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--child", choices=("plain", "taskflow"), help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        child(opts.child, opts.requests, opts.commit_interval, opts.concurrency)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not on PATH (apt-get install valgrind)")
    runs = [(s, n) for s in ("plain", "taskflow") for n in (opts.short, opts.long)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # two cores: two valgrind processes
        counts = pool.map(lambda run: count(*run, opts.commit_interval, opts.concurrency), runs)
        results = dict(zip(runs, counts, strict=True))
    extra = opts.long - opts.short
    per_request = {
        system: (results[(system, opts.long)][0] - results[(system, opts.short)][0]) / extra
        for system in ("plain", "taskflow")
    }
    print(
        f"instructions per request ({opts.long} - {opts.short} requests, "
        f"concurrency {opts.concurrency}, callgrind)"
    )
    print(f"  FastAPI BackgroundTasks (memory only): {per_request['plain']:12,.0f}")
    print(f"  taskflow, durable on SQLite (WAL):     {per_request['taskflow']:12,.0f}")
    print(f"  ratio: {per_request['taskflow'] / per_request['plain']:.3f}x")
    batch = COMMITS.search(results[("taskflow", opts.long)][1])
    if batch:
        commits, tasks = int(batch.group(1)), int(batch.group(2))
        print(f"  taskflow's long run: {tasks / max(commits, 1):.1f} tasks per commit")


if __name__ == "__main__":
    main()
