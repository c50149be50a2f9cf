"""A Redis that fails over, on loopback, for tests and benches: one master, its replicas and three
sentinels (``redis-server FILE --sentinel``), each an append-only server in a directory of its own.

:func:`start_ha` starts them and waits until the sentinels agree on the master;
:meth:`HighAvailability.url` is the ``redis+sentinel://`` URL every process is given (see
``dispatcher.resources.RedisTarget``). A test SIGKILLs the master with :meth:`kill_master`, waits
for the promotion with :meth:`wait_for_failover`, and brings the old master back as a replica with
:meth:`restart`.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from dispatcher.dev.services import Service, free_port, redis_server_binary, spawn, wait_until
from dispatcher.errors import ConfigurationError

#: Milliseconds without an answer before a sentinel deems a server down (production keeps 5-30 s;
#: a test wants its failover in a few seconds).
DOWN_AFTER_MS = 1000
#: Milliseconds a sentinel gives one failover before another may be tried.
FAILOVER_TIMEOUT_MS = 5000


@dataclass
class Node:
    """One ``redis-server`` (master or replica) and the directory holding its config and AOF."""

    port: int
    workdir: Path
    service: Service | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, timeout_s: float = 1.0) -> redis.Redis:
        """A direct client to this server (not through Sentinel)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout_s,
                           socket_connect_timeout=timeout_s)

    def alive(self) -> bool:
        return self.service is not None and self.service.alive()


@dataclass
class HighAvailability:
    """The servers and sentinels :func:`start_ha` started; :meth:`close` stops them all."""

    service_name: str
    nodes: list[Node]
    sentinels: list[Service]
    sentinel_ports: list[int]
    workdir: Path
    log_dir: Path
    _closed: bool = field(default=False, repr=False)

    def url(self, db: int = 0, password: str = "") -> str:
        """The ``redis+sentinel://`` URL naming every sentinel."""
        auth = f":{password}@" if password else ""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{auth}{hosts}/{self.service_name}/{db}"

    def sentinel_client(self, index: int = 0) -> Any:
        """A client of sentinel ``index`` (typed Any: redis-py types SENTINEL replies loosely)."""
        return redis.Redis(host="127.0.0.1", port=self.sentinel_ports[index], socket_timeout=1.0,
                           socket_connect_timeout=1.0)

    def master_port(self) -> int | None:
        """The master's port as the sentinels' majority sees it; None when they do not agree yet."""
        seen: dict[int, int] = {}
        for i in range(len(self.sentinel_ports)):
            with contextlib.suppress(redis.exceptions.RedisError):
                address = self.sentinel_client(i).sentinel_get_master_addr_by_name(self.service_name)
                if address:
                    seen[int(address[1])] = seen.get(int(address[1]), 0) + 1
        best = max(seen.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best and best[1] > len(self.sentinel_ports) // 2 else None

    def master(self) -> Node:
        """The node the sentinels call master.

        Raises:
            ConfigurationError: when the sentinels do not agree on one.
        """
        port = self.master_port()
        for node in self.nodes:
            if node.port == port:
                return node
        raise ConfigurationError(f"the sentinels do not agree on a master for {self.service_name}")

    def kill_master(self) -> Node:
        """SIGKILL the master (no shutdown, no last AOF write); returns its node."""
        node = self.master()
        assert node.service is not None
        node.service.process.send_signal(signal.SIGKILL)
        node.service.process.wait(10)
        return node

    def replicas(self) -> list[Node]:
        """The running nodes other than the master."""
        master = self.master()
        return [n for n in self.nodes if n is not master and n.alive()]

    def freeze(self, nodes: list[Node]) -> None:
        """SIGSTOP ``nodes``: they stop taking the replication stream (a replica lagging behind)."""
        for node in nodes:
            assert node.service is not None
            node.service.process.send_signal(signal.SIGSTOP)

    def thaw(self, nodes: list[Node]) -> None:
        """SIGCONT ``nodes`` frozen by :meth:`freeze`."""
        for node in nodes:
            if node.service is not None and node.service.process.poll() is None:
                node.service.process.send_signal(signal.SIGCONT)

    def wait_for_failover(self, old: Node, timeout_s: float = 60.0) -> Node:
        """Wait until the sentinels agree on a master other than ``old`` and it answers as one.

        Raises:
            ConfigurationError: when none is promoted within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            port = self.master_port()
            if port is not None and port != old.port:
                node = next(n for n in self.nodes if n.port == port)
                with contextlib.suppress(redis.exceptions.RedisError):
                    if node.client().info("replication").get("role") == "master":
                        return node
            time.sleep(0.1)
        raise ConfigurationError(f"no replica was promoted within {timeout_s:g} s")

    def restart(self, node: Node, as_replica: bool = False) -> None:
        """Start a stopped node again from its own AOF; the sentinels turn it into a replica of the
        current master (its config still names the old one, which the sentinels correct).

        A returning old master first reports itself a master, and the sentinels convert it only
        after about 8 s (their guard against flapping); ``as_replica`` starts it as a replica of
        the current master at once instead, as an operator's config would, so that a test can
        fail over again seconds later with every replica following.
        """
        follow = []
        if as_replica:
            follow = ["--replicaof", "127.0.0.1", str(self.master().port)]
        _start_node(node, self.log_dir, follow)

    def wait_until_replica(self, node: Node, timeout_s: float = 60.0) -> None:
        """Wait until ``node`` (restarted) follows the current master with its link up and the
        master sees all its replicas: the next failover then has every replica to choose from.

        Raises:
            ConfigurationError: when that takes over ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.exceptions.RedisError, ConfigurationError):
                if (node.client().info("replication").get("master_link_status") == "up"
                        and self.master().client().info("replication").get("connected_slaves", 0)
                        == len(self.nodes) - 1):
                    return
            time.sleep(0.1)
        raise ConfigurationError(f"the server on port {node.port} did not follow the master within {timeout_s:g} s")

    def close(self) -> None:
        """Stop every sentinel and server and remove their directories."""
        if self._closed:
            return
        self._closed = True
        for service in self.sentinels:
            service.stop()
        for node in self.nodes:
            if node.service is not None:
                node.service.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> HighAvailability:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _start_node(node: Node, log_dir: Path, extra: list[str] | None = None) -> None:
    name = f"redis-{node.port}"
    argv = [redis_server_binary(), str(node.workdir / "redis.conf"), *(extra or [])]
    node.service = spawn(name, argv, f"redis://{node.address}/0", log_dir=log_dir)

    def answers() -> bool:
        try:
            return bool(node.client(0.2).ping())
        except redis.exceptions.BusyLoadingError:
            return False
        except redis.exceptions.RedisError:
            return False

    wait_until(answers, node.service, timeout_s=30)


def _node_config(port: int, workdir: Path, master_port: int | None) -> str:
    lines = [f"port {port}", "bind 127.0.0.1", f"dir {workdir}", "daemonize no", 'save ""',
             "appendonly yes", "appendfsync everysec", "repl-diskless-sync no",
             # A failover must find every replica eligible, whatever its link's last hiccup.
             "replica-serve-stale-data yes", "repl-backlog-size 64mb"]
    if master_port is not None:
        lines.append(f"replicaof 127.0.0.1 {master_port}")
    return "\n".join(lines) + "\n"


def _sentinel_config(port: int, workdir: Path, service_name: str, master_port: int, quorum: int) -> str:
    return "\n".join([
        f"port {port}", "bind 127.0.0.1", f"dir {workdir}", "daemonize no",
        f"sentinel monitor {service_name} 127.0.0.1 {master_port} {quorum}",
        f"sentinel down-after-milliseconds {service_name} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {service_name} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {service_name} 1",
    ]) + "\n"


def start_ha(service_name: str = "dispatcher", replicas: int = 2, sentinels: int = 3,
             log_dir: Path | None = None) -> HighAvailability:
    """Start a master, ``replicas`` replicas and ``sentinels`` sentinels on free loopback ports, and
    wait until the replicas are in sync and the sentinels agree on the master (up to a minute).

    Raises:
        ConfigurationError: when a server cannot start or the set does not come together.
    """
    workdir = Path(tempfile.mkdtemp(prefix="dispatcher-ha-"))
    logs = log_dir or workdir / "logs"
    nodes: list[Node] = []
    ha = HighAvailability(service_name, nodes, [], [], workdir, logs)
    try:
        master_port: int | None = None
        for i in range(1 + replicas):
            port = free_port()
            node_dir = workdir / f"node-{i}"
            node_dir.mkdir(parents=True)
            (node_dir / "redis.conf").write_text(_node_config(port, node_dir, master_port))
            node = Node(port, node_dir)
            nodes.append(node)
            _start_node(node, logs)
            master_port = master_port or port
        assert master_port is not None
        for i in range(sentinels):
            port = free_port()
            sentinel_dir = workdir / f"sentinel-{i}"
            sentinel_dir.mkdir()
            config = sentinel_dir / "sentinel.conf"
            config.write_text(_sentinel_config(port, sentinel_dir, service_name, master_port, sentinels // 2 + 1))
            service = spawn(f"sentinel-{port}", [redis_server_binary(), str(config), "--sentinel"],
                            f"redis://127.0.0.1:{port}", log_dir=logs)
            ha.sentinels.append(service)
            ha.sentinel_ports.append(port)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.exceptions.RedisError):
                ready = nodes[0].client().info("replication").get("connected_slaves", 0) == replicas
                known = all(len(ha.sentinel_client(i).sentinel_slaves(service_name)) == replicas
                            and len(ha.sentinel_client(i).sentinel_sentinels(service_name)) == sentinels - 1
                            for i in range(sentinels))
                if ready and known and ha.master_port() == master_port:
                    return ha
            time.sleep(0.2)
        raise ConfigurationError("the Redis replicas and sentinels did not come together within 60 s")
    except BaseException:
        ha.close()
        raise
