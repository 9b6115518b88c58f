"""A throwaway Redis Cluster for the tests: three primaries started from ``redis-server``.

The cluster tests need a real cluster, with real ``MOVED`` redirections,
slot ownership and shard channels, and a test machine rarely has one; a
``redis-server`` binary is enough to make one in a temporary directory in
about a second.  The nodes listen on free ports of 127.0.0.1, persist
nothing, and are killed when the session ends.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

SLOTS = 16384
START_TIMEOUT_S = 20.0
# Ports tried for the nodes; the cluster bus of each listens 10000 higher.
_PORT_RANGE = (20000, 30000)


@dataclass
class LocalCluster:
    """The running nodes: their ports, in slot order (the first owns slot 0)."""

    ports: list[int]
    directory: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The URL taskflow is given: any one node, with the cluster scheme."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}/0"

    def slot_of(self, key: str) -> int:
        """``CLUSTER KEYSLOT key``."""
        with redis.Redis(port=self.ports[0]) as client:
            return int(client.cluster("KEYSLOT", key))

    def node_of(self, key: str) -> int:
        """The port of the primary that serves ``key``'s slot now."""
        return self.node_of_slot(self.slot_of(key))

    def move_slot(self, slot: int, to_port: int) -> None:
        """Reshard: move ``slot`` and its keys to the primary on ``to_port``, as redis-cli does."""
        from_port = self.node_of_slot(slot)
        if from_port == to_port:
            return
        with redis.Redis(port=from_port) as source, redis.Redis(port=to_port) as target:
            source_id, target_id = source.cluster("MYID"), target.cluster("MYID")
            target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
            source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
            while keys := source.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
                source.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *keys)
            for port in self.ports:
                with redis.Redis(port=port) as node:
                    node.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)

    def node_of_slot(self, slot: int) -> int:
        """The port of the primary that serves ``slot`` now."""
        with redis.Redis(port=self.ports[0]) as client:
            for start, end, (_, port, *_) in client.cluster("SLOTS"):
                if start <= slot <= end:
                    return int(port)
        raise LookupError(f"no node serves slot {slot}")

    def stop(self) -> None:
        """Kill every node and wait for it, then delete the directory."""
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait(10)
        self.processes.clear()
        shutil.rmtree(self.directory, ignore_errors=True)


def redis_server_binary() -> str | None:
    """The ``redis-server`` on the PATH, or None."""
    return shutil.which("redis-server")


def start_cluster(binary: str, directory: Path, primaries: int = 3) -> LocalCluster:
    """Start ``primaries`` nodes, share the slots evenly, wait for ``cluster_state:ok``."""
    cluster = LocalCluster(ports=_free_ports(primaries), directory=directory)
    try:
        for port in cluster.ports:
            cluster.processes.append(_start_node(binary, directory, port))
        clients = [_connected(port) for port in cluster.ports]
        try:
            share = SLOTS // primaries
            for index, client in enumerate(clients):
                last = SLOTS - 1 if index == primaries - 1 else (index + 1) * share - 1
                client.execute_command("CLUSTER ADDSLOTSRANGE", index * share, last)
            for port in cluster.ports[1:]:
                clients[0].execute_command("CLUSTER MEET", "127.0.0.1", port)
            _wait_for_ok(clients)
        finally:
            for client in clients:
                client.close()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _free_ports(count: int) -> list[int]:
    """``count`` ports free on 127.0.0.1, each with its cluster-bus port free too."""
    found: list[int] = []
    candidates = list(range(*_PORT_RANGE))
    random.shuffle(candidates)
    for port in candidates:
        if _free(port) and _free(port + 10000):
            found.append(port)
            if len(found) == count:
                return found
    raise RuntimeError(f"no {count} free ports with free cluster-bus ports in {_PORT_RANGE}")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _start_node(binary: str, directory: Path, port: int) -> subprocess.Popen[bytes]:
    node_dir = directory / str(port)
    node_dir.mkdir(parents=True)
    # Keep the args sorted like a redis.conf: what persists, where, how it clusters.
    args = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(node_dir),
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(node_dir / "nodes.conf"),
        "--cluster-node-timeout", "2000",
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--logfile", str(node_dir / "redis.log"),
    ]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _connected(port: int) -> redis.Redis:
    """A client of the node on ``port``, once it answers."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        client = redis.Redis(port=port, socket_connect_timeout=1)
        try:
            client.ping()
            return client
        except redis.ConnectionError:
            client.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _wait_for_ok(clients: list[redis.Redis]) -> None:
    """Until every node says ``cluster_state:ok`` and knows every other node."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        with contextlib.suppress(redis.RedisError):
            infos = [client.cluster("INFO") for client in clients]
            if all(_ready(info, len(clients)) for info in infos):
                return
        if time.monotonic() > deadline:
            raise RuntimeError("the test Redis Cluster did not reach cluster_state:ok")
        time.sleep(0.1)


def _ready(info: object, nodes: int) -> bool:
    if not isinstance(info, dict):
        return False
    return info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == nodes
