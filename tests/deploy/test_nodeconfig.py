"""The shared option/config-file conventions (deploy.nodeconfig)."""
import pytest
from twisted.python import usage

from deploy.nodeconfig import ConfigError, NodeOptions, positive_int


class DemoOptions(NodeOptions):
    section = "demo"
    default_listen = ["tcp:9000:interface=127.0.0.1"]
    optParameters = [["ready-kernels", None, 2, "ready kernels", positive_int("--ready-kernels")]]
    optFlags = [["require-sandbox", None, "refuse to start without the sandbox"]]


def parse(argv):
    o = DemoOptions()
    o.parseOptions(argv)
    return o


def test_defaults_without_a_file():
    o = parse([])
    assert o["listen"] == ["tcp:9000:interface=127.0.0.1"]
    assert o["ready-kernels"] == 2
    assert not o["require-sandbox"]


def test_command_line_listen_replaces_default_and_repeats():
    o = parse(["--listen", "tcp:1", "--listen", "tcp:2"])
    assert o["listen"] == ["tcp:1", "tcp:2"]


def test_file_then_node_table_then_command_line(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[demo]\nready-kernels = 5\nrequire-sandbox = true\nlisten = ["tcp:7"]\n'
        '[demo.nodes.c2]\nready-kernels = 7\n[other]\nx = 1\n'
    )
    o = parse(["--config", str(cfg)])
    assert (o["ready-kernels"], o["require-sandbox"], o["listen"]) == (5, 1, ["tcp:7"])
    o = parse(["--config", str(cfg), "--node", "c2"])
    assert o["ready-kernels"] == 7
    o = parse(["--config", str(cfg), "--node", "c2", "--ready-kernels", "9", "--listen", "tcp:8"])
    assert (o["ready-kernels"], o["listen"]) == (9, ["tcp:8"])


def test_file_values_are_validated_like_the_command_line(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[demo]\nready-kernels = 0\n")
    with pytest.raises(usage.UsageError, match="ready-kernels must be at least 1"):
        parse(["--config", str(cfg)])
    cfg.write_text("[demo]\nno-such-option = 1\n")
    with pytest.raises(ConfigError, match="unknown option 'no-such-option'"):
        parse(["--config", str(cfg)])
    cfg.write_text("[demo\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse(["--config", str(cfg)])
    with pytest.raises(ConfigError, match="cannot read config file"):
        parse(["--config", str(tmp_path / "missing.toml")])


def test_bad_command_line_value_is_a_usage_error():
    with pytest.raises(usage.UsageError, match="whole number"):
        parse(["--ready-kernels", "lots"])


def test_node_name_rules():
    o = parse(["--node", "c1"])
    assert o.node_name("x") == "c1"
    o = parse(["--node", "Bad_Name"])
    with pytest.raises(usage.UsageError, match="lowercase"):
        o.node_name("x")
