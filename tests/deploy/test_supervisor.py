"""The cluster supervisor (deploy.cluster.Supervisor, Twisted's ProcessMonitor)
on a fake clock: a node that dies at once is restarted after a delay that
doubles up to the maximum, one that lived long is restarted at once, and
each death is a log line saying which node, how it ended and when it comes
back.  The processes are fakes: only the clock and spawning are replaced."""
from __future__ import annotations

from twisted.internet import error, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from deploy.cluster import Supervisor


class FakeTransport:
    def __init__(self, pid):
        self.pid = pid
        self.signals = []

    def signalProcess(self, sig):
        self.signals.append(sig)


class ClockWithProcesses(task.Clock):
    """A task.Clock that also 'spawns': it records each start and keeps the protocol."""

    def __init__(self):
        super().__init__()
        self.started = []    # (time, name of the argv[0])

    def spawnProcess(self, proto, executable, args, env=None, path=None, uid=None, gid=None, **kw):
        self.started.append((self.seconds(), args[0]))
        proto.makeConnection(FakeTransport(1000 + len(self.started)))
        return proto.transport


def die(monitor, name, code=1):
    monitor.protocols[name].processEnded(Failure(error.ProcessTerminated(exitCode=code)))


def make():
    clock = ClockWithProcesses()
    events = []
    monitor = Supervisor(reactor=clock)
    monitor.log = Logger(namespace="cluster", observer=events.append)
    monitor.addProcess("c1", ["/bin/c1"])
    monitor.startService()
    return clock, monitor, events


def test_quick_deaths_back_off_doubling_up_to_the_maximum():
    clock, monitor, events = make()
    assert [t for t, _ in clock.started] == [0]
    delays = []
    for _ in range(7):
        die(monitor, "c1")
        call = monitor.restart["c1"]
        delays.append(call.getTime() - clock.seconds())
        clock.advance(delays[-1])
        assert "c1" in monitor.protocols          # restarted
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert len(clock.started) == 8


def test_a_node_that_lived_long_restarts_at_once_and_resets_the_back_off():
    clock, monitor, events = make()
    die(monitor, "c1")
    clock.advance(1)
    die(monitor, "c1")                            # quick again: 2 s
    clock.advance(2)
    clock.advance(Supervisor.threshold + 1)       # this time it lives
    die(monitor, "c1")
    assert monitor.restart["c1"].getTime() == clock.seconds()
    clock.advance(0)
    die(monitor, "c1")
    assert monitor.restart["c1"].getTime() - clock.seconds() == Supervisor.minRestartDelay


def test_each_death_is_a_log_line_with_the_node_how_and_when():
    clock, monitor, events = make()
    die(monitor, "c1", code=3)
    die_events = [e for e in events if e.get("name") == "c1"]
    assert len(die_events) == 1
    e = die_events[0]
    assert e["log_level"].name == "warn"
    text = e["log_format"].format(**e)
    assert text.startswith("c1 died (") and "exit code 3" in text and text.endswith("restarting it in 1 s")


def test_no_restart_and_no_line_once_stopping():
    clock, monitor, events = make()
    monitor.stopService()
    assert clock.started and monitor.protocols["c1"].transport.signals == ["TERM"]
    die(monitor, "c1")
    assert "c1" not in monitor.restart and not [e for e in events if e.get("name") == "c1"]
    clock.advance(60)
    assert len(clock.started) == 1


def test_a_node_that_ignores_sigterm_is_killed_after_kill_time_and_logged():
    clock, monitor, events = make()
    monitor.stopService()
    clock.advance(Supervisor.killTime)
    assert monitor.protocols["c1"].transport.signals == ["TERM", "KILL"]
    assert any("SIGKILL" in e["log_format"] for e in events)


def test_a_held_node_stays_down_at_least_its_restart_delay():
    """Redis servers (restart-delay 3 s): even after a long life, not back at once,
    so the Sentinels see a killed primary down and fail over."""
    clock, monitor, events = make()
    monitor.hold["c1"] = 3.0
    clock.advance(60)
    die(monitor, "c1")
    assert monitor.restart["c1"].getTime() - clock.seconds() == 3.0
    clock.advance(2.9)
    assert "c1" not in monitor.protocols
    clock.advance(0.1)
    assert "c1" in monitor.protocols
    waits = []
    for _ in range(3):                             # quick deaths: the back-off (1, 2, 4) once longer wins
        die(monitor, "c1")
        waits.append(monitor.restart["c1"].getTime() - clock.seconds())
        clock.advance(waits[-1])
    assert waits == [3.0, 3.0, 4.0]
