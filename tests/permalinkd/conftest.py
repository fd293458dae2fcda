"""Fixtures for permalinkd tests: real redis-server processes on free loopback ports."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from deploy import rediscluster
from tests.support.ports import free_ports
from tests.support.procs import Children, wait_until

PASSWORD = "test-password-7f3a"


@pytest.fixture(scope="module")
def redis_single(request):
    """One password-protected redis-server (no persistence): its port."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    kids = Children(label=request.module.__name__.rsplit(".", 1)[-1] + "-redis")
    (port,) = free_ports(1)
    child = kids.start("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                 "--requirepass", PASSWORD, "--save", "", "--appendonly", "no"])
    wait_until(lambda: rediscluster.command(port, "PING", password=PASSWORD) == "PONG", 10, "redis up", child=child)
    yield port
    kids.stop_all()


class Topology:
    def __init__(self, kids: Children, directory: str, master_name: str = "cellstack"):
        ports = free_ports(6)
        self.kids = kids
        self.directory = directory
        self.master_name = master_name
        self.primary, self.replicas, self.sentinels = ports[0], ports[1:3], ports[3:6]
        self.password = PASSWORD
        self.specs = rediscluster.process_specs(directory, master_name=master_name, primary=self.primary,
                                                replicas=self.replicas, sentinels=self.sentinels,
                                                password=PASSWORD)
        self.procs = {}

    def start(self, name: str | None = None):
        for spec in self.specs:
            if name is None or spec.name == name:
                self.procs[spec.name] = self.kids.start(spec.name, list(spec.argv))

    def port_of(self, name: str) -> int:
        return {"redis-primary": self.primary, "redis-replica1": self.replicas[0],
                "redis-replica2": self.replicas[1]}[name]

    def name_of(self, port: int) -> str:
        return {self.primary: "redis-primary", self.replicas[0]: "redis-replica1",
                self.replicas[1]: "redis-replica2"}[port]

    def wait_ready(self, primary: int | None = None, timeout: float = 30):
        others = [p for p in [self.primary, *self.replicas] if p != (primary or self.primary)]
        rediscluster.wait_ready(timeout=timeout, primary=primary or self.primary, replicas=others,
                                sentinels=self.sentinels, master_name=self.master_name, password=PASSWORD)

    def current_primary(self):
        return rediscluster.sentinel_primary(self.sentinels, self.master_name, PASSWORD)

    @property
    def sentinel_arg(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.sentinels)


@pytest.fixture
def topology(children):
    """Primary + 2 replicas + 3 Sentinels (fresh for each test), ready."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    directory = tempfile.mkdtemp(prefix="permalinkd-redis-")
    topo = Topology(children, directory)
    topo.start()
    topo.wait_ready()
    yield topo
    children.stop_all()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / "redis-password"
    path.write_text(PASSWORD + "\n")
    os.chmod(path, 0o600)
    return str(path)
