"""The cluster file turned into processes (deploy.clusterspec): pure."""
import os

import pytest

from deploy.clusterspec import ClusterFileError, health_url_for, load_cluster

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_shipped_cluster_file_describes_the_designed_cluster():
    spec = load_cluster(os.path.join(ROOT, "deploy", "cluster.toml"), ROOT, "/venv/bin")
    kinds = [(n.kind, n.name) for n in spec.nodes]
    assert kinds == [("permalinkd", "p1"), ("permalinkd", "p2"), ("cellserver", "c1"),
                     ("cellserver", "c2"), ("edgeproxy", "e1")]
    assert spec.redis.replicas == (6392, 6393) and len(spec.redis.sentinels) == 3
    c1 = next(n for n in spec.nodes if n.name == "c1")
    assert c1.argv[:2] == ("/venv/bin/twistd", "-n")
    assert c1.argv[-4:] == ("--config", spec.config_path, "--node", "c1")
    assert c1.health_url == "http://127.0.0.1:8101/healthz"
    e1 = next(n for n in spec.nodes if n.name == "e1")
    assert e1.health_url == "http://127.0.0.1:8080/healthz"  # the plain listener answers /healthz
    assert spec.url == "https://localhost:8443/"
    assert spec.var == os.path.join(ROOT, "var")


def test_health_urls():
    assert health_url_for(["unix:/x", "ssl:8443:privateKey=k"]) == "https://127.0.0.1:8443/healthz"
    assert health_url_for(["tcp:80:interface=0.0.0.0"]) == "http://127.0.0.1:80/healthz"
    assert health_url_for(["unix:/x"]) is None


def test_errors(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("[redis]\nprimary = 'x'\n")
    with pytest.raises(ClusterFileError, match="redis"):
        load_cluster(str(bad), str(tmp_path), "/b")
    bad.write_text("[cellserver.nodes.a]\n[permalinkd.nodes.a]\n")
    with pytest.raises(ClusterFileError, match="unique"):
        load_cluster(str(bad), str(tmp_path), "/b")
    with pytest.raises(ClusterFileError, match="cannot read"):
        load_cluster(str(tmp_path / "none.toml"), str(tmp_path), "/b")
