"""Which sandbox layers are used where (cellserver.sandbox.settings): pure."""
from cellserver.sandbox.settings import Capabilities, SandboxSettings, SlotAllocator, plan

FULL = Capabilities(root=True, netns=True, cgroups=("memory", "pids", "cpu"), seccomp=True, mounts=True)


def test_root_with_everything_uses_every_layer_but_the_pid_namespace():
    p = plan(SandboxSettings(), FULL)
    assert all(p.layers[k] for k in ("ipc", "net", "account", "no_new_privs", "rlimits", "cgroups", "seccomp",
                                     "mounts"))
    assert p.missing == [] and p.not_implemented == ["pidns"]       # --require-sandbox starts
    assert p.report()["not_implemented"] == ["pidns"]
    assert "host pid" in p.why["pidns"] and "hidepid" in p.why["pidns"]


def test_mounts_that_failed_here_say_why():
    caps = Capabilities(root=True, netns=True, cgroups=("memory", "pids", "cpu"), seccomp=True,
                        mounts=False, mounts_error="pivot_root: Invalid argument")
    p = plan(SandboxSettings(), caps)
    assert p.missing == ["mounts"] and "pivot_root: Invalid argument" in p.why["mounts"]
    assert "hidepid" not in p.why["pidns"]


def test_not_root_degrades_with_reasons():
    p = plan(SandboxSettings(), Capabilities(root=False, netns=False, cgroups=(), seccomp=True))
    assert not p.layers["account"] and not p.layers["cgroups"] and not p.layers["net"]
    assert p.layers["seccomp"] and p.layers["rlimits"]
    assert {"account", "cgroups", "net", "mounts"} <= set(p.missing) and "root" in p.why["account"]
    assert "root" in p.why["mounts"]


def test_disabled_is_reported_as_such():
    p = plan(SandboxSettings(enabled=False), FULL)
    assert p.missing[0] == "net" and p.why == {"sandbox": "disabled by --no-sandbox"}


def test_settings_round_trip_and_rlimits():
    s = SandboxSettings(cpu_seconds=5, memory_mb=256)
    assert SandboxSettings.from_json(s.to_json()) == s
    assert not SandboxSettings.from_json("").enabled
    assert dict(s.rlimits())["RLIMIT_CPU"] == 5 and dict(s.rlimits())["RLIMIT_CORE"] == 0
    assert (SandboxSettings().home_mb, SandboxSettings().tmp_mb) == (64, 64)


def test_accounts_are_not_reused_until_released_and_then_last():
    a = SlotAllocator(3)
    got = [a.take(), a.take()]
    assert got == [0, 1]
    a.release(0)
    assert a.take() == 2          # the freed slot waits behind the never-used ones
    assert a.take() == 0
    try:
        a.take()
    except RuntimeError as e:
        assert "no free sandbox account" in str(e)
    else:
        raise AssertionError("a full pool must refuse")


def test_accounts_with_live_processes_are_skipped():
    a = SlotAllocator(4)
    assert a.take(busy={0, 1}) == 2            # e.g. another cell server's kernels on this host
    assert a.take(busy={0}) == 1
    assert a.take() == 0
    try:
        a.take(busy={3})
    except RuntimeError:
        pass
    else:
        raise AssertionError("only busy slots left: refuse")
