"""Kernel lifetime rules (cellserver.lifetimes), with time passed in."""
import pytest

from cellserver.lifetimes import (REASON_DISCONNECTED, REASON_FINISHED, REASON_IDLE, REASON_LIFESPAN,
                                  REASON_UNUSED, Lifetime, parse_timeout)


def lt(timeout=0.0, **kw):
    return Lifetime(created=100.0, timeout=timeout, idle_cap=900, lifespan=1800, connect_grace=30, **kw)


def test_parse_timeout():
    assert parse_timeout(None, 900) == 0 and parse_timeout("", 900) == 0
    assert parse_timeout("60", 900) == 60 and parse_timeout("99999", 900) == 900
    for bad in ("-1", "nan", "soon", "inf-"):
        with pytest.raises(ValueError):
            parse_timeout(bad, 900)


def test_unused_kernel_is_reclaimed_after_grace():
    l = lt()
    assert l.check(129) is None and l.next_check(100) == 130
    assert l.check(130) == REASON_UNUSED


def test_timeout_zero_ends_once_idle_after_first_execution():
    l = lt()
    l.connected(101)
    assert l.check(102) is None
    l.execution_started(102)
    assert l.check(500) is None           # busy: never ends for idleness
    l.execution_finished(503)
    assert l.check(503) == REASON_FINISHED


def test_timeout_zero_with_an_interact_stays_until_idle_cap():
    l = lt()
    l.connected(101)
    l.execution_started(101)
    l.comm_opened()
    l.execution_finished(102)
    assert l.check(103) is None
    assert l.next_check(103) == 102 + 900
    assert l.check(1002) == REASON_IDLE


def test_timeout_zero_ends_when_the_page_goes():
    l = lt()
    l.connected(101)
    l.disconnected(105)
    assert l.check(105) == REASON_DISCONNECTED


def test_positive_timeout_counts_idle_time_from_last_activity():
    l = lt(timeout=60)
    l.connected(101)
    l.execution_started(110)
    l.execution_finished(120)
    assert l.check(179) is None and l.next_check(150) == 180
    l.activity(170)
    assert l.check(200) is None
    assert l.check(230) == REASON_IDLE


def test_lifespan_beats_everything():
    l = lt(timeout=600)
    l.connected(101)
    l.execution_started(102)
    assert l.check(1899) is None
    assert l.check(1900) == REASON_LIFESPAN
    assert l.next_check(200) == 1900


def test_timeout_zero_stays_for_the_files_its_code_wrote():
    l = Lifetime(created=100, timeout=0, idle_cap=900, lifespan=1800, files_grace=60)
    l.connected(101)
    l.execution_started(102)
    l.files_reported()
    l.execution_finished(103)
    assert l.check(103) is None and l.next_check(103) == 163     # links in the page still work
    assert l.check(163) == REASON_FINISHED
    plain = Lifetime(created=100, timeout=0, idle_cap=900, lifespan=1800, files_grace=60)
    plain.connected(101)
    plain.execution_started(102)
    plain.execution_finished(103)
    assert plain.check(103) == REASON_FINISHED                   # no files: ends at once, as before
