"""The shipped deployment files: cluster files, systemd units, logrotate config.

- Each cluster file (the multi-host sample and ``deploy/cluster.toml``) is
  parsed for every node it names with that node's real twistd ``Options``
  (``--config FILE --node NAME``, the same path ``twistd <kind>`` takes):
  first every key must be one of the node's long options and every value
  pass its coercion (``apply_table``, no files needed), then the whole
  ``parseOptions`` + ``postOptions`` runs with the file's absolute paths
  (``/etc/cellstack``, ``/var/log/cellstack``) moved under a temporary
  directory holding stand-ins for the certificate, key and password file
  (postOptions checks that they exist; it does not read certificates).
- The units: ``Restart=always`` and a ``User=`` (root only with a comment
  saying why); ``systemd-analyze verify`` when it is installed.
- logrotate: ``logrotate -d`` on the shipped file, and a real forced
  rotation of stand-in files, when logrotate is installed.
"""
from __future__ import annotations

import fnmatch
import glob
import os
import re
import shutil
import subprocess
import tomllib

import pytest

from deploy.nodeconfig import NODE_NAME_RE, load_node_table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
SAMPLE = os.path.join(DEPLOY, "samples", "multihost.toml")
DEV = os.path.join(DEPLOY, "cluster.toml")
BENCH = os.path.join(ROOT, "loadtest", "bench-cluster.toml")
CLUSTER_FILES = [SAMPLE, DEV, BENCH]
UNITS = sorted(glob.glob(os.path.join(DEPLOY, "systemd", "*.service")))
LOGROTATE = os.path.join(DEPLOY, "logrotate", "cellstack")


def options_class(kind: str):
    if kind == "cellserver":
        from cellserver.tap import Options
    elif kind == "edgeproxy":
        from edgeproxy.tap import Options
    else:
        from permalinkd.tap import Options
    return Options


def nodes_of(path: str) -> list[tuple[str, str]]:
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    return [(kind, name) for kind in ("cellserver", "edgeproxy", "permalinkd")
            for name in (doc.get(kind, {}).get("nodes") or {})]


def load(path: str) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


# --- cluster files ------------------------------------------------------------------

@pytest.mark.parametrize("path", CLUSTER_FILES, ids=os.path.basename)
def test_every_key_is_a_real_option_and_every_value_passes(path):
    doc = load(path)
    names = [name for _, name in nodes_of(path)]
    assert len(names) == len(set(names)), "node names must be unique across kinds"
    for kind, name in nodes_of(path):
        assert NODE_NAME_RE.match(name), name
        Options = options_class(kind)
        o = Options()
        known = {k for k in o.synonyms if len(k) > 1} - {"config", "help", "version", "node"}
        tables = [doc[kind]] + [doc[kind]["nodes"][name]]
        for table in tables:
            unknown = {k for k in table if k != "nodes" and k not in known}
            assert not unknown, f"{path}: [{kind}] options {sorted(unknown)} are not options of twistd {kind}"
        # The values, through the same handlers as the command line (no file needed).
        Options().apply_table(load_node_table(path, kind, name), path)


def _moved_copy(path: str, tmp_path) -> str:
    """The cluster file with its absolute paths moved under tmp_path, and stand-ins for the
    files postOptions checks; relative paths (deploy/cluster.toml) resolve in tmp_path."""
    text = open(path, encoding="utf-8").read()
    for prefix in ("/etc/cellstack/", "/var/log/cellstack/"):
        text = text.replace(prefix, str(tmp_path / prefix.strip("/")) + "/")
    moved = tmp_path / "cluster.toml"
    moved.write_text(text)
    doc = tomllib.loads(text)
    needed = []
    for kind in ("edgeproxy",):
        for table in [doc.get(kind, {}), *(doc.get(kind, {}).get("nodes") or {}).values()]:
            listen = table.get("listen", [])
            for desc in [listen] if isinstance(listen, str) else listen:
                for part in desc.split(":"):
                    key, _, value = part.partition("=")
                    if key in ("privateKey", "certKey", "extraCertChain"):
                        needed.append(value)
    for table in [doc.get("permalinkd", {}), *(doc.get("permalinkd", {}).get("nodes") or {}).values()]:
        if "redis-password-file" in table:
            needed.append(table["redis-password-file"])
    for f in needed:
        full = f if os.path.isabs(f) else os.path.join(tmp_path, f)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as fh:
            fh.write("stand-in-secret\n")
    return str(moved)


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=os.path.basename)
def test_every_node_parses_with_its_real_options(path, tmp_path, monkeypatch):
    moved = _moved_copy(path, tmp_path)
    monkeypatch.chdir(tmp_path)
    for kind, name in nodes_of(path):
        o = options_class(kind)()
        o.parseOptions(["--config", moved, "--node", name])
        assert o.settings is not None
        assert o["node"] == name


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=os.path.basename)
def test_edges_name_the_cell_servers_and_permalinkds_the_file_runs(path):
    """The edges' --cells / --permalinks match the nodes' names and listen addresses."""
    doc = load(path)

    def listen_addr(kind, name):
        table = {**doc[kind], **doc[kind]["nodes"][name]}
        listen = table["listen"][0]
        port = listen.split(":")[1]
        host = re.search(r"interface=([^:]+)", listen).group(1)
        return f"{host}:{port}"

    for option, kind in (("cells", "cellserver"), ("permalinks", "permalinkd")):
        for edge in doc["edgeproxy"]["nodes"]:
            table = {**doc["edgeproxy"], **doc["edgeproxy"]["nodes"][edge]}
            pairs = dict(item.split("=", 1) for item in table[option].split(","))
            assert set(pairs) == set(doc[kind]["nodes"]), f"{edge} --{option} vs [{kind}.nodes]"
            for name, url in pairs.items():
                assert url == f"http://{listen_addr(kind, name)}", (edge, name, url)


def test_sample_topology():
    doc = load(SAMPLE)
    assert doc["cellserver"]["require-sandbox"] is True
    assert len(doc["cellserver"]["nodes"]) == 3 and len(doc["edgeproxy"]["nodes"]) == 2
    assert len(doc["permalinkd"]["nodes"]) == 2
    redis = doc["redis"]
    assert len(redis["replicas"]) == 2 and len(redis["sentinels"]) == 3
    hosts = {a.split(":")[0] for a in [redis["primary"], *redis["replicas"]]}
    assert len(hosts) == 3, "primary and replicas on three hosts"
    assert len({a.split(":")[0] for a in redis["sentinels"]}) == 3, "Sentinels on three hosts"
    assert doc["permalinkd"]["sentinels"] == ",".join(redis["sentinels"])
    assert doc["permalinkd"]["master-name"] == redis["master-name"]
    for desc in doc["edgeproxy"]["listen"]:
        assert "/etc/cellstack/tls/" in desc


def test_sample_logs_are_where_the_units_and_logrotate_put_them():
    doc = load(SAMPLE)
    logs = {"cellserver": doc["cellserver"]["computation-log"], "edgeproxy": doc["edgeproxy"]["access-log"],
            "permalinkd": doc["permalinkd"]["request-log"]}
    patterns = [p for line in open(LOGROTATE) if line.strip().endswith("{")
                for p in line.strip()[:-1].split()]
    for kind, log in logs.items():
        unit = unit_keys(os.path.join(DEPLOY, "systemd", f"{kind}@.service"))
        assert os.path.dirname(log) == "/var/log/" + unit["LogsDirectory"][0], kind
        assert any(fnmatch.fnmatch(log, p) for p in patterns), f"logrotate does not cover {log}"


# --- systemd units ------------------------------------------------------------------

def unit_keys(path: str) -> dict[str, list[str]]:
    """key -> values of the [Service] section (continuation lines joined)."""
    keys: dict[str, list[str]] = {}
    section, pending = None, ""
    for raw in open(path, encoding="utf-8"):
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section == "Service" and "=" in line:
            k, v = line.split("=", 1)
            keys.setdefault(k.strip(), []).append(" ".join(v.split()))
    return keys


@pytest.mark.parametrize("path", UNITS, ids=os.path.basename)
def test_unit_restarts_always_and_names_its_user(path):
    keys = unit_keys(path)
    assert keys.get("Restart") == ["always"]
    assert keys.get("RestartSec"), "RestartSec= keeps a crash loop from spinning"
    user = (keys.get("User") or [""])[-1]
    assert user, "every unit names its user"
    if user == "root":
        comments = " ".join(line for line in open(path) if line.startswith("#")).lower()
        assert "root" in comments and "sandbox" in comments, "running as root needs its reason in a comment"


@pytest.mark.parametrize("kind", ["cellserver", "edgeproxy", "permalinkd"])
def test_node_units_run_the_node_from_the_shared_file(kind):
    path = os.path.join(DEPLOY, "systemd", f"{kind}@.service")
    keys = unit_keys(path)
    reactor = "--reactor=cellstack-edge " if kind == "edgeproxy" else ""     # edgeproxy/reactor.py
    assert keys["ExecStart"] == [f"/opt/cellstack/venv/bin/twistd -n --pidfile= {reactor}{kind} "
                                 f"--config /etc/cellstack/cellstack.toml --node %i"]
    if kind == "cellserver":
        assert keys["User"] == ["root"]
        assert "ExecReload" not in keys, "the cell server has no SIGHUP handler"
    else:
        assert keys["User"][0].startswith("cellstack-")
        assert keys["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    if kind == "edgeproxy":
        assert keys["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]


def _verify_usable(tmp_path) -> str | None:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        return "systemd-analyze is not installed"
    probe = tmp_path / "cellstack-probe.service"
    probe.write_text("[Service]\nExecStart=/bin/true\nUser=daemon\n")
    r = subprocess.run([exe, "verify", str(probe)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return f"systemd-analyze verify does not work here: {(r.stderr or r.stdout).strip()[:200]}"
    return None


def test_units_pass_systemd_analyze_verify(tmp_path):
    why = _verify_usable(tmp_path)
    if why:
        pytest.skip(why)
    instances = {"cellserver@": "c1", "edgeproxy@": "e1", "permalinkd@": "p1",
                 "redis-cellstack@": "primary", "redis-cellstack-sentinel@": "1"}
    units = tmp_path / "units"
    units.mkdir()
    for path in UNITS:
        shutil.copy(path, units)
    assert {os.path.basename(p).split(".")[0] for p in UNITS} == set(instances)
    for template, instance in instances.items():
        unit = units / f"{template}{instance}.service"
        r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
        problems = []
        for line in (r.stdout + r.stderr).splitlines():
            m = re.search(r"Command (\S+) is not executable", line)
            if m and not os.path.exists(m.group(1)):
                continue          # redis-server / the venv not installed on this machine
            if line.strip():
                problems.append(line)
        assert not problems, f"{unit.name}:\n" + "\n".join(problems)


# --- logrotate ----------------------------------------------------------------------

def test_logrotate_config_parses():
    exe = shutil.which("logrotate") or ("/usr/sbin/logrotate" if os.path.exists("/usr/sbin/logrotate") else None)
    if exe is None:
        pytest.skip("logrotate is not installed (deploy/install installs it)")
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([exe, "-d", "-s", os.path.join(d, "state"), LOGROTATE],
                           capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "error" not in out.lower(), out


def test_logrotate_rotates_each_node_the_way_it_can_reopen(tmp_path):
    """permalinkd: moved away, then told (reload = SIGHUP) to reopen; edge and cell server: copytruncate."""
    exe = shutil.which("logrotate") or ("/usr/sbin/logrotate" if os.path.exists("/usr/sbin/logrotate") else None)
    if exe is None:
        pytest.skip("logrotate is not installed (deploy/install installs it)")
    logs = tmp_path / "log"
    text = open(LOGROTATE).read().replace("/var/log/cellstack", str(logs))
    assert "systemctl reload 'permalinkd@*.service'" in text
    text = re.sub(r"systemctl reload .*", f"echo reopen >> {tmp_path}/signalled", text)
    conf = tmp_path / "logrotate.conf"
    conf.write_text(text)
    for kind, name in (("permalinkd", "requests"), ("edgeproxy", "access"), ("cellserver", "computations")):
        (logs / kind).mkdir(parents=True)
        (logs / kind / f"{name}.jsonl").write_text('{"kind":"x"}\n')
    r = subprocess.run([exe, "-f", "-s", str(tmp_path / "state"), str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (logs / "permalinkd" / "requests.jsonl").exists()      # permalinkd makes the next one
    assert (logs / "permalinkd" / "requests.jsonl.1").read_text() == '{"kind":"x"}\n'
    assert (tmp_path / "signalled").read_text() == "reopen\n"          # once (sharedscripts)
    for kind, name in (("edgeproxy", "access"), ("cellserver", "computations")):
        assert (logs / kind / f"{name}.jsonl").read_text() == ""       # truncated in place
        assert (logs / kind / f"{name}.jsonl.1").read_text() == '{"kind":"x"}\n'
