"""What a cluster file describes, turned into the processes to run.

Pure logic (no I/O but reading the TOML file): the launcher
(``deploy/cluster``) and its tests both build a ``ClusterSpec`` from the
same file the nodes read their options from (``--config FILE --node NAME``).

The file holds the usual node tables (``[cellserver]``, ``[permalinkd]``,
``[edgeproxy]`` with ``nodes.<name>`` sub-tables: one process per sub-table)
plus two tables only the launcher reads:

- ``[cluster]``: ``var`` (state, logs and secrets, relative to the checkout),
  ``url`` (what to print when the cluster is up);
- ``[redis]``: ``master-name``, ``primary``, ``replicas``, ``sentinels``
  (ports on 127.0.0.1), ``password-file``, ``restart-delay`` (seconds, 3 by
  default: a dead Redis server is restarted no sooner, longer than the
  Sentinels' down-after (1 s), so a killed primary is replaced by a failover,
  as when its host is lost, instead of coming back as primary before any
  Sentinel noticed; it then returns as a replica).
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from edgeproxy.reactor import TWISTD_OPTION as EDGE_REACTOR

NODE_KINDS = ("permalinkd", "cellserver", "edgeproxy")  # start order


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None   # answers 200 once the process serves
    kind: str = ""
    runtime_dir: str | None = None  # cell servers: sockets and kernels' dirs (up records it, down sweeps it)
    restart_delay: float = 0.0      # the supervisor restarts it no sooner than this after it died


@dataclass(frozen=True)
class RedisTopology:
    master_name: str
    primary: int
    replicas: tuple[int, ...]
    sentinels: tuple[int, ...]
    password_file: str
    restart_delay: float = 3.0      # seconds a dead Redis server stays down (see load_cluster)


@dataclass(frozen=True)
class ClusterSpec:
    root: str                 # the checkout
    config_path: str          # absolute path of the cluster file
    var: str                  # absolute state directory
    url: str
    redis: RedisTopology | None
    nodes: tuple[ProcessSpec, ...]

    @property
    def run_dir(self) -> str:
        return os.path.join(self.var, "run")

    @property
    def log_dir(self) -> str:
        return os.path.join(self.var, "log")


class ClusterFileError(ValueError):
    pass


def health_url_for(listen: list[str]) -> str | None:
    """``http://host:port/healthz`` for the first tcp/ssl listen description."""
    for desc in listen:
        parts = desc.split(":")
        kind = parts[0]
        if kind not in ("tcp", "ssl") or len(parts) < 2:
            continue
        port = parts[1]
        host = "127.0.0.1"
        for p in parts[2:]:
            if p.startswith("interface="):
                host = p.split("=", 1)[1] or host
        scheme = "https" if kind == "ssl" else "http"
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"{scheme}://{host}:{port}/healthz"
    return None


def load_cluster(path: str, root: str, python_bin: str) -> ClusterSpec:
    """Read the cluster file and say which processes make the cluster."""
    config_path = os.path.abspath(path)
    try:
        with open(config_path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ClusterFileError(f"cannot read cluster file {path}: {e}") from e
    cluster = doc.get("cluster", {})
    var = os.path.join(root, cluster.get("var", "var"))
    url = cluster.get("url", "")
    twistd = os.path.join(python_bin, "twistd")

    redis = None
    if "redis" in doc:
        r = doc["redis"]
        try:
            redis = RedisTopology(
                master_name=str(r.get("master-name", "cellstack")),
                primary=int(r["primary"]),
                replicas=tuple(int(p) for p in r.get("replicas", [])),
                sentinels=tuple(int(p) for p in r.get("sentinels", [])),
                password_file=os.path.join(root, r.get("password-file", "var/secrets/redis-password")),
                restart_delay=float(r.get("restart-delay", 3.0)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ClusterFileError(f"{path}: [redis] needs primary, replicas and sentinels ports: {e}") from e

    nodes = []
    for kind in NODE_KINDS:
        table = doc.get(kind, {})
        base_listen = table.get("listen", [])
        for name, node_table in (table.get("nodes") or {}).items():
            listen = node_table.get("listen", base_listen)
            listen = [listen] if isinstance(listen, str) else list(listen)
            argv = (
                twistd, "-n", "--pidfile=", f"--logfile={os.path.join(var, 'log', name + '.log')}",
                *((EDGE_REACTOR,) if kind == "edgeproxy" else ()),
                kind, "--config", config_path, "--node", name,
            )
            health = health_url_for(listen)
            if kind == "edgeproxy":
                plain = node_table.get("http-listen", table.get("http-listen"))
                if plain:
                    health = health_url_for([plain]) or health
            runtime_dir = None
            if kind == "cellserver":   # the cell server's own default: cellserver.provider_settings
                runtime_dir = node_table.get("runtime-dir", table.get("runtime-dir")) or f"/tmp/cs-{name}"
            nodes.append(ProcessSpec(name=name, argv=argv, health_url=health, kind=kind, runtime_dir=runtime_dir))
    names = [n.name for n in nodes]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ClusterFileError(f"{path}: node names must be unique, repeated: {sorted(dupes)}")
    if not url:
        edge = next((n for n in nodes if n.kind == "edgeproxy"), None)
        if edge is not None:
            listen = doc["edgeproxy"]["nodes"][edge.name].get("listen", doc["edgeproxy"].get("listen", []))
            hu = health_url_for([listen] if isinstance(listen, str) else listen)
            if hu:
                u = urlsplit(hu)
                url = f"{u.scheme}://localhost:{u.port}/"
    return ClusterSpec(root=root, config_path=config_path, var=var, url=url, redis=redis, nodes=tuple(nodes))
