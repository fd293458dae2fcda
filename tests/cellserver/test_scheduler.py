"""Evaluate while busy (cellserver.scheduler)."""
from hypothesis import given, strategies as st

from cellserver.scheduler import MAX_INTERRUPTS, Abort, Interrupt, Scheduler, Send


def req(i):
    return {"header": {"msg_id": f"m{i}", "msg_type": "execute_request"}}


def test_idle_kernel_runs_at_once():
    s = Scheduler()
    assert s.execute(req(1)) == [Send(req(1))]
    assert s.idle("m1") == [] and not s.busy


def test_busy_kernel_interrupts_once_and_runs_only_the_newest():
    s = Scheduler()
    s.execute(req(1))
    s.began("m1")
    assert s.execute(req(2)) == [Interrupt()]
    assert s.execute(req(3)) == [Abort(req(2))]        # no second interrupt
    assert s.idle("other") == []                         # idle of something else changes nothing
    assert s.idle("m1") == [Send(req(3))]
    assert s.running == "m3"


def test_a_request_whose_code_is_over_is_not_interrupted():
    s = Scheduler()
    s.execute(req(1))
    s.began("m1")
    s.result("other")                                    # someone else's result: still running
    assert s.execute(req(2)) == [Interrupt()]
    s = Scheduler()
    s.execute(req(1))
    s.result("m1")                                       # its execute_result or reply arrived
    assert s.execute(req(2)) == []                       # waits for the idle; no SIGINT for the next one
    assert s.idle("m1") == [Send(req(2))]
    s.began("m2")
    assert s.execute(req(3)) == [Interrupt()]            # m2 is running again: interrupt as before


def test_a_request_not_begun_yet_is_interrupted_once_it_begins():
    """ipykernel ignores SIGINT between requests: an interrupt sent before the
    running request's execute_input would be lost."""
    s = Scheduler()
    s.execute(req(1))
    assert s.execute(req(2)) == []                       # m1 sent, not begun: no interrupt yet
    assert s.execute(req(3)) == [Abort(req(2))]
    assert s.began("other") == []
    assert s.began("m1") == [Interrupt()]                # now, once
    assert s.execute(req(4)) == [Abort(req(3))]
    assert s.idle("m1") == [Send(req(4))]
    assert s.began("m4") == []                           # nothing pending for m4
    s = Scheduler()
    s.execute(req(1))
    s.execute(req(2))
    s.result("m1")                                       # m1 over before its execute_input was seen
    assert s.began("m1") == []                           # no interrupt for the next one to catch
    assert s.idle("m1") == [Send(req(2))]
    s = Scheduler()
    silent = {"header": {"msg_id": "q1", "msg_type": "execute_request"}, "content": {"silent": True}}
    s.execute(silent)                                    # publishes no execute_input: interrupt at once
    assert s.execute(req(2)) == [Interrupt()]


def test_an_interrupted_request_still_running_is_interrupted_again_a_few_times():
    """A SIGINT just before a blocking call waits for it: ask again."""
    s = Scheduler()
    s.execute(req(1))
    assert s.still_running("m1") == []                   # never interrupted: nothing to repeat
    s.began("m1")
    assert s.execute(req(2)) == [Interrupt()]
    assert s.still_running("other") == []
    again = [s.still_running("m1") for _ in range(MAX_INTERRUPTS + 2)]
    assert again.count([Interrupt()]) == MAX_INTERRUPTS - 1 and again[-1] == []
    assert s.idle("m1") == [Send(req(2))]
    assert s.still_running("m1") == [] and s.still_running("m2") == []   # m2 is not being interrupted
    s.began("m2")
    s.result("m2")
    assert s.execute(req(3)) == [] and s.still_running("m2") == []      # its code is over


def test_abandon_aborts_the_held_request():
    s = Scheduler()
    s.execute(req(1))
    s.execute(req(2))
    assert s.abandon() == [Abort(req(2))] and not s.busy


@given(st.lists(st.sampled_from(["press", "begin", "idle"]), max_size=60))
def test_every_request_is_sent_or_aborted_and_the_last_press_runs(events):
    s = Scheduler()
    pressed, sent, aborted = [], [], []
    n = 0
    for ev in events:
        if ev == "press":
            n += 1
            pressed.append(f"m{n}")
            actions = s.execute(req(n))
        elif ev == "begin":
            actions = s.began(s.running)
            assert all(isinstance(a, Interrupt) for a in actions)
        else:
            actions = s.idle(s.running)
        for a in actions:
            if isinstance(a, Send):
                sent.append(a.message["header"]["msg_id"])
            elif isinstance(a, Abort):
                aborted.append(a.message["header"]["msg_id"])
    while s.busy:
        for a in s.idle(s.running):
            sent.append(a.message["header"]["msg_id"])
    assert sorted(sent + aborted, key=lambda x: int(x[1:])) == pressed
    assert not set(sent) & set(aborted)
    if pressed:
        assert sent[-1] == pressed[-1]
