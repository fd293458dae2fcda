"""Which sandbox layers are used where (cellserver.sandbox.settings): pure."""
from dataclasses import replace

from cellserver.sandbox.settings import Capabilities, SandboxSettings, SlotAllocator, plan

FULL = Capabilities(root=True, netns=True, cgroups=("memory", "pids", "cpu"), seccomp=True, mounts=True,
                    pidns=True, landlock_abi=7)


def test_root_with_everything_uses_every_layer():
    p = plan(SandboxSettings(), FULL)
    assert all(p.layers[k] for k in ("ipc", "net", "account", "no_new_privs", "rlimits", "cgroups", "seccomp",
                                     "mounts", "pidns", "landlock"))
    assert p.missing == [] and p.not_implemented == [] and p.why == {}    # --require-sandbox starts
    assert p.report()["not_implemented"] == [] and p.report()["landlock_abi"] == 7


def test_mounts_that_failed_here_say_why():
    caps = Capabilities(root=True, netns=True, cgroups=("memory", "pids", "cpu"), seccomp=True,
                        mounts=False, mounts_error="pivot_root: Invalid argument", pidns=True, landlock_abi=1)
    p = plan(SandboxSettings(), caps)
    assert p.missing == ["mounts"] and "pivot_root: Invalid argument" in p.why["mounts"]


def test_layers_turned_off_in_the_settings_are_missing_with_that_reason():
    p = plan(SandboxSettings(mounts=False, pidns=False, landlock=False), FULL)
    assert p.missing == ["mounts", "pidns", "landlock"]
    assert p.why["pidns"] == p.why["mounts"] == p.why["landlock"] == "turned off in the settings"
    assert p.landlock_abi == 0


def test_no_landlock_in_the_kernel_is_missing():
    p = plan(SandboxSettings(), replace(FULL, landlock_abi=0))
    assert p.missing == ["landlock"] and "no Landlock" in p.why["landlock"]


def test_not_root_without_user_namespaces_keeps_landlock_rlimits_and_seccomp():
    caps = Capabilities(root=False, netns=True, cgroups=(), seccomp=True, mounts=True, pidns=True, userns=True,
                        landlock_abi=6)
    p = plan(SandboxSettings(userns=False), caps)       # as where they are forbidden
    assert not p.userns
    assert [k for k in ("landlock", "seccomp", "rlimits", "no_new_privs") if p.layers[k]] == \
        ["landlock", "seccomp", "rlimits", "no_new_privs"]
    assert p.missing == ["net", "mounts", "pidns", "account", "cgroups"]


def test_no_pid_namespace_here_is_missing():
    p = plan(SandboxSettings(), replace(FULL, pidns=False))
    assert p.missing == ["pidns"] and "pid namespace" in p.why["pidns"]


def test_not_root_degrades_with_reasons():
    p = plan(SandboxSettings(), Capabilities(root=False, netns=False, cgroups=(), seccomp=True))
    assert not p.layers["account"] and not p.layers["cgroups"] and not p.layers["net"]
    assert p.layers["seccomp"] and p.layers["rlimits"]
    assert {"account", "cgroups", "net", "mounts", "pidns"} <= set(p.missing) and "root" in p.why["account"]
    assert "root" in p.why["mounts"] and "root" in p.why["pidns"]


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


def test_not_root_with_user_namespaces_still_gets_the_namespaces():
    caps = Capabilities(root=False, netns=True, cgroups=(), seccomp=True, mounts=True, pidns=True, userns=True,
                        landlock_abi=4)
    p = plan(SandboxSettings(), caps)
    assert p.userns and p.report()["user_namespace"] is True
    assert all(p.layers[k] for k in ("net", "mounts", "pidns", "seccomp", "rlimits", "no_new_privs"))
    assert p.missing == ["account", "cgroups"]
    assert "size-capped" in p.why["mounts"]             # the home is a plain directory without root


def test_root_does_not_use_user_namespaces():
    assert not plan(SandboxSettings(), replace(FULL, userns=True)).userns
