"""The acknowledgement drills at full size, on the databases you choose, as one table.

Runs ``tests/integration/test_ack_drill.py`` through pytest (its fixtures make
the databases and start the processes) with the full-size settings in the
environment, and prints every drill's figures as a Markdown table.  A drill
that fails is a figure that is not 0: the table is the point, the exit status
is pytest's.

    python benchmarks/ack_drill.py                       # PostgreSQL
    python benchmarks/ack_drill.py --db sqlite --db postgres --db mysql --db redis
    python benchmarks/ack_drill.py --requests 5000 --cuts 5,30 --scenario a

The servers are the tests' own (``TASKFLOW_TEST_POSTGRES_URL``,
``TASKFLOW_TEST_MYSQL_URL``, ``TASKFLOW_TEST_REDIS_URL``; see tests/conftest.py).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE = "tests/integration/test_ack_drill.py"
SCENARIOS = {
    "a": "test_sigkill_twice_mid_load",
    "b": "test_two_instances_through_database_cuts",
    "c": "test_sigkill_during_outage",
}
COLUMNS = (
    "scenario",
    "backend",
    "requests",
    "ok",
    "non_200",
    "lost",
    "double_started",
    "end_not_success",
    "success_without_end",
    "active_after_settle",
    "kept_after_503",
    "orphans",
    "mid_run_at_kill",
    "excused_end_at_kill",
    "settled_in",
)
FIELD = re.compile(r"(\w+)=(\S+)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", action="append", choices=["sqlite", "postgres", "mysql", "redis"])
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cuts", default="5,20", help="drill b's two cuts, in seconds")
    parser.add_argument("--outage", type=float, default=5.0, help="drill c's cut, in seconds")
    parser.add_argument("--lease", type=float, default=2.0, help="the instances' lease")
    args = parser.parse_args()
    databases = args.db or ["postgres"]
    tests = [SCENARIOS[s] for s in args.scenario or sorted(SCENARIOS)]
    env = dict(
        os.environ,
        TASKFLOW_DRILL_REQUESTS=str(args.requests),
        TASKFLOW_DRILL_CONCURRENCY=str(args.concurrency),
        TASKFLOW_DRILL_CUTS=args.cuts,
        TASKFLOW_DRILL_OUTAGE=str(args.outage),
        TASKFLOW_DRILL_LEASE=str(args.lease),
    )
    selection = f"({' or '.join(tests)}) and ({' or '.join(databases)})"
    command = [sys.executable, "-m", "pytest", MODULE, "-s", "-q", "--tb=no", "-k", selection]
    print("$", " ".join(command), flush=True)
    lines = []
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as pytest_run:
        assert pytest_run.stdout is not None
        for line in pytest_run.stdout:
            print(line, end="", flush=True)
            if line.startswith("ACK-DRILL "):
                lines.append(dict(FIELD.findall(line)))
    print()
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + " --- |" * len(COLUMNS))
    for figures in lines:
        print("| " + " | ".join(figures.get(column, "?") for column in COLUMNS) + " |")
    return pytest_run.returncode


if __name__ == "__main__":
    sys.exit(main())
