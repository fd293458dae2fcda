"""ProviderSettings validation, the CLI options the tap includes, pool arithmetic, socket layout."""
from __future__ import annotations

import sys

import pytest
from twisted.python import usage

from cellserver.provider import layout
from cellserver.provider.plan import kernels_to_start, restart_delay
from cellserver.provider_settings import (PROVIDER_OPTIONS, ProviderSettings, parse_preload,
                                          provider_settings_from_options)


class Opts(usage.Options):
    optParameters = PROVIDER_OPTIONS


def parse(*argv):
    o = Opts()
    o.parseOptions(list(argv))
    return provider_settings_from_options(o)


def test_defaults():
    s = parse()
    assert s == ProviderSettings()
    assert (s.ready_kernels, s.max_kernels, s.preload) == (8, 32, ("numpy", "matplotlib"))
    assert s.kernel_python == sys.executable
    assert s.runtime_dir_for("c1") == "/tmp/cs-c1"


def test_options_build_settings():
    s = parse("--ready-kernels", "0", "--max-kernels", "3", "--preload", "numpy, json",
              "--runtime-dir", "/tmp/x", "--kernel-start-timeout", "2.5", "--take-wait", "1")
    assert s == ProviderSettings(ready_kernels=0, max_kernels=3, preload=("numpy", "json"),
                                 runtime_dir="/tmp/x", start_timeout=2.5, take_wait=1.0)
    assert s.runtime_dir_for("c1") == "/tmp/x"
    assert parse("--preload", "").preload == ()


@pytest.mark.parametrize("argv, message", [
    (["--ready-kernels", "-1"], "ready-kernels must be at least 0"),
    (["--max-kernels", "0"], "max-kernels must be at least 1"),
    (["--max-kernels", "two"], "max-kernels must be a whole number"),
    (["--ready-kernels", "5", "--max-kernels", "4"], "ready-kernels must be between 0 and max-kernels"),
    (["--preload", "numpy,os path"], "is not a module name"),
    (["--kernel-python", "python3"], "not an executable absolute path"),
    (["--kernel-python", "/nonexistent/python"], "not an executable absolute path"),
    (["--runtime-dir", "relative"], "must be an absolute path"),
    (["--runtime-dir", "/tmp/" + "x" * 100], "too long"),
    (["--kernel-start-timeout", "0"], "kernel-start-timeout must be at least"),
])
def test_bad_values_get_clear_messages(argv, message):
    with pytest.raises((usage.UsageError, ValueError), match=message):
        parse(*argv)


def test_options_have_help_texts():
    for row in PROVIDER_OPTIONS:
        assert len(row) == 5 and row[0] and len(row[3]) > 20 and callable(row[4])


def test_parse_preload():
    assert parse_preload(" a.b ,c,,") == ("a.b", "c")
    with pytest.raises(ValueError):
        parse_preload("1abc")


def test_kernels_to_start():
    k = dict(ready_target=4, capacity=10)
    assert kernels_to_start(ready=0, starting=0, running=0, waiting=0, **k) == 4
    assert kernels_to_start(ready=2, starting=1, running=5, waiting=0, **k) == 1
    assert kernels_to_start(ready=4, starting=0, running=0, waiting=2, **k) == 2
    assert kernels_to_start(ready=0, starting=0, running=9, waiting=3, **k) == 1    # capacity
    assert kernels_to_start(ready=0, starting=0, running=10, waiting=1, **k) == 0
    assert kernels_to_start(ready=6, starting=0, running=0, waiting=0, **k) == 0


def test_restart_delay_backs_off_to_a_cap():
    assert [restart_delay(n, 5.0) for n in range(6)] == [0.0, 0.5, 1.0, 2.0, 4.0, 5.0]


def test_layout_paths_are_short_and_distinct():
    paths = {layout.socket_path("/tmp/cs-c1/sock/0123abcd", c) for c in layout.PORTS}
    assert len(paths) == 5
    assert layout.endpoint("/tmp/d", "shell") == "ipc:///tmp/d/k-1"
    layout.check_sock_dir("/tmp/cs-" + "n" * 31 + "/sock/0123abcd")
    with pytest.raises(ValueError, match="under 107"):
        layout.check_sock_dir("/" + "d" * 103)


def test_options_work_from_a_toml_config_file(tmp_path):
    from deploy.nodeconfig import NodeOptions

    class CellOpts(NodeOptions):
        section = "cellserver"
        optParameters = PROVIDER_OPTIONS

    cfg = tmp_path / "c.toml"
    cfg.write_text('[cellserver]\nready-kernels = 1\npreload = ["numpy", "json"]\n'
                   '[cellserver.nodes.c2]\nmax-kernels = 5\n')
    o = CellOpts()
    o.parseOptions(["--config", str(cfg), "--node", "c2", "--ready-kernels", "2"])
    s = provider_settings_from_options(o)
    assert (s.ready_kernels, s.max_kernels, s.preload) == (2, 5, ("numpy", "json"))
    cfg.write_text('[cellserver]\nmax-kernels = 0\n')
    with pytest.raises(usage.UsageError, match="max-kernels must be at least 1"):
        CellOpts().parseOptions(["--config", str(cfg)])


def test_each_cell_server_can_have_its_own_kernel_accounts():
    from cellserver.tap import Options

    o = Options()
    o.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--no-sandbox", "--kernel-uid-base", "62000",
                    "--kernel-accounts", "64", "--max-kernels", "600"])   # no sandbox: accounts unused
    o = Options()
    o.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--kernel-uid-base", "62000",
                    "--kernel-accounts", "64", "--max-kernels", "64", "--ready-kernels", "4"])
    sb = o.settings.provider.sandbox
    assert (sb.uid_base, sb.slots) == (62000, 64)
    with pytest.raises(usage.UsageError, match=r"--kernel-accounts \(64\) must be at least --max-kernels \(65\)"):
        Options().parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--kernel-accounts", "64",
                                "--max-kernels", "65"])


def test_merging_idle_kernels_is_on_unless_turned_off(tmp_path):
    from cellserver.tap import Options

    o = Options()
    o.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--no-sandbox"])
    assert o.settings.provider.merge_idle is True
    o = Options()
    o.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--no-sandbox", "--no-merge-idle-kernels"])
    assert o.settings.provider.merge_idle is False
    cfg = tmp_path / "c.toml"
    cfg.write_text('[cellserver]\nno-merge-idle-kernels = true\nno-sandbox = true\n')
    o = Options()
    o.parseOptions(["--config", str(cfg), "--listen", "tcp:0:interface=127.0.0.1"])
    assert o.settings.provider.merge_idle is False
