"""Request overhead over real sockets: uvicorn + wrk, taskflow against plain BackgroundTasks.

Each system is served by uvicorn in its own process (one worker, no access
log, the loop and HTTP parser uvicorn picks by default), and wrk drives
``POST /work``, a route that adds one no-op task, with ``--connections``
connections from one thread.  Every round starts a fresh server and database
for each system, warms it up, then measures; the systems alternate within a
round.  The apps are in ``served_apps.py``.

    python benchmarks/served_overhead.py                      # 3 rounds x 10 s
    python benchmarks/served_overhead.py --quick              # smoke run, a few seconds each
    python benchmarks/served_overhead.py --database sqlite --systems plain taskflow

PostgreSQL runs use their own database (``--pg-url``, created when missing,
its tables emptied before every run).  The peer fastapi-taskflow is measured
when ``fastapi_taskflow`` is importable, or found under ``--peer-path``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
LUA = 'wrk.method = "POST"\nwrk.body = "{}"\nwrk.headers["Content-Type"] = "application/json"\n'
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
TARGET_THROUGHPUT, TARGET_P99 = 0.8, 2.0


@dataclass(frozen=True)
class System:
    name: str  # plain | taskflow | peer
    database: str  # "" | sqlite | postgresql
    frozen: bool = False  # taskflow with TaskManager(freeze_gc_at_startup=True)

    @property
    def label(self) -> str:
        if self.name == "peer":
            return "fastapi-taskflow"
        label = f"{self.name}/{self.database}" if self.database else self.name
        return label + "+freeze" if self.frozen else label


@dataclass(frozen=True)
class Result:
    requests_per_s: float
    p50: float  # seconds
    p99: float
    requests: int
    settled: str  # what the database holds after shutdown, for the durable systems
    loop: str  # the event loop's module, as the app reports it
    server_log: str  # what uvicorn wrote to stdout/stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_wrk(output: str) -> tuple[float, float, float, int]:
    """requests/s, p50 and p99 in seconds, completed requests; refuses errors."""
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")

    def latency(percent: str) -> float:
        found = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if found is None:
            raise RuntimeError(f"no {percent}% latency in wrk's output:\n{output}")
        return float(found[1]) * UNITS[found[2]]

    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    count = re.search(r"^\s+(\d+) requests in", output, re.M)
    if rate is None or count is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return float(rate[1]), latency("50"), latency("99"), int(count[1])


def run_wrk(
    port: int, seconds: float, connections: int, lua: str
) -> tuple[float, float, float, int]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", lua]
    command.append(f"http://127.0.0.1:{port}/work")
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


def reset_postgres(url: str) -> None:
    """Create the database when missing, migrate it, empty taskflow's tables."""
    import asyncpg

    from taskflow.db.tables import metadata

    async def reset() -> None:
        try:
            conn = await asyncpg.connect(url)
        except asyncpg.InvalidCatalogNameError:
            server, name = url.rsplit("/", 1)
            admin = await asyncpg.connect(f"{server}/postgres")
            await admin.execute(f'CREATE DATABASE "{name}"')
            await admin.close()
            conn = await asyncpg.connect(url)
        await conn.close()

    asyncio.run(reset())
    upgrade = [sys.executable, "-m", "taskflow.cli", "db", "upgrade", "--url", url]
    subprocess.run(upgrade, check=True, capture_output=True)

    async def truncate() -> None:
        conn = await asyncpg.connect(url)
        names = ", ".join(table.name for table in metadata.sorted_tables)
        await conn.execute(f"TRUNCATE {names} RESTART IDENTITY")
        await conn.close()

    asyncio.run(truncate())


def settled(system: System, database: str) -> str:
    """Task rows by status after the server's shutdown, e.g. "success 41234"."""
    query = "SELECT status, COUNT(*) FROM taskflow_tasks GROUP BY status ORDER BY status"
    if system.database == "sqlite":
        with sqlite3.connect(database.removeprefix("sqlite:///")) as conn:
            rows = conn.execute(query).fetchall()
    else:
        import asyncpg

        async def count() -> list[tuple[str, int]]:
            conn = await asyncpg.connect(database)
            found = await conn.fetch(query)
            await conn.close()
            return [(row[0], row[1]) for row in found]

        rows = asyncio.run(count())
    return ", ".join(f"{status} {n}" for status, n in rows)


def wait_until_up(
    server: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 30.0
) -> str:
    """Poll GET /ping until the app has started; returns its event loop's module."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as reply:
                return str(json.load(reply)["loop"])
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"uvicorn did not answer on port {port} within {timeout:g} s")


def serve_and_measure(system: System, opts: argparse.Namespace, lua: str) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        database = ""
        if system.name == "peer":
            database = os.path.join(tmp, "snapshot.db")
        elif system.database == "sqlite":
            database = f"sqlite:///{os.path.join(tmp, 'tasks.db')}"
        elif system.database == "postgresql":
            database = opts.pg_url
            try:
                reset_postgres(database)
            except (OSError, subprocess.CalledProcessError) as exc:
                raise SystemExit(f"PostgreSQL at {database}: {exc} (or --database sqlite)") from exc
        env = dict(os.environ, SERVED_SYSTEM=system.name, SERVED_DATABASE=database)
        env["SERVED_ACKNOWLEDGE"] = opts.acknowledge or ""
        env["SERVED_FREEZE_GC"] = "1" if system.frozen else ""
        if system.name == "peer" and opts.peer_path:
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [opts.peer_path, os.environ.get("PYTHONPATH")])
            )
        port = free_port()
        command = [sys.executable, "-m", "uvicorn", "served_apps:app", "--app-dir", str(HERE)]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        command += ["--no-access-log", "--log-level", "warning"]
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            loop = wait_until_up(server, port, log_path)
            run_wrk(port, opts.warmup, opts.connections, lua)
            rate, p50, p99, requests = run_wrk(port, opts.duration, opts.connections, lua)
        finally:
            server.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown: the lifespan ends
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        rows = settled(system, database) if system.name == "taskflow" else ""
        server_log = log_path.read_text(errors="replace")
    return Result(rate, p50, p99, requests, rows, loop, server_log)


def peer_available(peer_path: str | None) -> bool:
    if importlib.util.find_spec("fastapi_taskflow") is not None:
        return True
    return peer_path is not None and (Path(peer_path) / "fastapi_taskflow").is_dir()


def describe_server() -> str:
    """The loop and HTTP implementation uvicorn's "auto" picks, by uvicorn's own rules."""
    import uvicorn

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    spec = importlib.util.find_spec("taskflow")
    where = Path(spec.origin).parent.parent if spec and spec.origin else "?"
    return f"uvicorn {uvicorn.__version__}, loop {loop}, http {http} (auto); taskflow from {where}"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def report(systems: list[System], runs: dict[System, list[Result]]) -> None:
    plain_runs = next((runs[s] for s in systems if s.name == "plain"), None)
    print("\nper round (ratios against plain FastAPI's run of the same round):")
    for system in systems:
        for i, run in enumerate(runs[system]):
            line = f"  {system.label:27} round {i + 1}: {run.requests_per_s:6.0f} req/s"
            line += f"  p50 {ms(run.p50):>9}  p99 {ms(run.p99):>9}"
            if plain_runs is not None and system.name != "plain":
                base = plain_runs[i]
                throughput, p99 = run.requests_per_s / base.requests_per_s, run.p99 / base.p99
                line += f"  {throughput:.2f}x, p99 {p99:.2f}x"
            print(line + (f"  [rows: {run.settled}]" if run.settled else ""))
    print("\nmedians of the rounds:")
    medians = {
        system: tuple(
            statistics.median(getattr(run, field) for run in runs[system])
            for field in ("requests_per_s", "p50", "p99")
        )
        for system in systems
    }
    plain = next((medians[s] for s in systems if s.name == "plain"), None)
    print(f"{'system':27} {'req/s':>8} {'p50':>9} {'p99':>9} {'thr. ratio':>10} {'p99 ratio':>9}")
    for system in systems:
        rate, p50, p99 = medians[system]
        line = f"{system.label:27} {rate:8.0f} {ms(p50):>9} {ms(p99):>9}"
        if plain is not None:
            line += f" {rate / plain[0]:9.2f}x {p99 / plain[2]:8.2f}x"
            if system.name == "taskflow":
                met = rate / plain[0] >= TARGET_THROUGHPUT and p99 / plain[2] <= TARGET_P99
                line += "  target met" if met else "  target not met"
        print(line)
    if plain is not None:
        print(f"(targets: throughput >= {TARGET_THROUGHPUT}x plain, p99 <= {TARGET_P99}x plain)")
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--systems", nargs="+", choices=["plain", "taskflow", "peer"], default=None,
        help="default: plain, taskflow, and peer when fastapi_taskflow is found",
    )  # fmt: skip
    parser.add_argument(
        "--database", nargs="+", choices=["sqlite", "postgresql"],
        default=["sqlite", "postgresql"], help="taskflow's databases (default: both)",
    )  # fmt: skip
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/taskflow_served")
    parser.add_argument("--peer-path", help="a directory holding fastapi_taskflow (pip --target)")
    parser.add_argument(
        "--acknowledge", choices=["committed", "buffered"],
        help="taskflow's TaskManager(acknowledge=...); default: the library's default",
    )  # fmt: skip
    parser.add_argument(
        "--freeze-gc", choices=["off", "on", "both"], default="both",
        help="taskflow with TaskManager(freeze_gc_at_startup=...): off, on, or both (default)",
    )  # fmt: skip
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 2 s + 1 s")
    opts = parser.parse_args()
    if opts.quick:
        opts.rounds, opts.duration, opts.warmup = 1, 2.0, 1.0
    names = opts.systems or ["plain", "taskflow", "peer"]
    if "peer" in names and not peer_available(opts.peer_path):
        if opts.systems:
            raise SystemExit("fastapi_taskflow not found: pip install fastapi-taskflow")
        names.remove("peer")
    freezes = {"off": [False], "on": [True], "both": [False, True]}[opts.freeze_gc]
    systems = [
        System(name, database, frozen)
        for name in names
        for database in (opts.database if name == "taskflow" else [""])
        for frozen in (freezes if name == "taskflow" else [False])
    ]
    print(describe_server())
    print("load average at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(
        f"wrk -t1 -c{opts.connections}, {opts.rounds} rounds x {opts.duration:g} s "
        f"(after {opts.warmup:g} s of warm-up), POST /work adding one async no-op task; "
        f"taskflow acknowledge={opts.acknowledge or 'default'}"
    )
    runs: dict[System, list[Result]] = {system: [] for system in systems}
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(LUA)
        lua.flush()
        for i in range(opts.rounds):
            for system in systems:
                runs[system].append(serve_and_measure(system, opts, lua.name))
                done = runs[system][-1]
                print(f"  round {i + 1}: {system.label:20} done (loop: {done.loop})", flush=True)
                if done.server_log.strip():
                    lines = done.server_log.strip().splitlines()
                    print(f"    its server logged {len(lines)} lines, the first: {lines[0][:200]}")
    report(systems, runs)


if __name__ == "__main__":
    main()
