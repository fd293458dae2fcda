"""The pure parts of the kernel template (cellserver/provider/kernelapp.py);
a whole forked kernel is tested in test_pool_integration.py."""
import logging

from hypothesis import given, strategies as st

from cellserver.provider.kernelapp import ModuleSnapshot, _quiet_below_handlers

names = st.frozensets(st.text(alphabet="abcxyz.", min_size=1, max_size=4), max_size=12)


@given(names, names, names)
def test_module_snapshot_answers_what_a_union_would(template, added, current):
    snapshot = ModuleSnapshot(template, set(added))
    assert set(current) - snapshot == set(current) - (template | added)
    assert len(snapshot) == len(template | added)
    assert all((n in snapshot) == (n in template | added) for n in current)


def _logger(name, *handler_levels):
    log = logging.getLogger(f"test_kernelapp.{name}")
    log.handlers = [logging.NullHandler(level) for level in handler_levels] if handler_levels else []
    log.setLevel(logging.DEBUG)
    return log


def test_logger_lets_through_what_its_handlers_write():
    log = _logger("warn", logging.WARNING, logging.ERROR)
    _quiet_below_handlers(log)
    assert log.level == logging.WARNING
    assert not log.isEnabledFor(logging.DEBUG) and log.isEnabledFor(logging.WARNING)


def test_logger_stays_open_for_a_handler_that_takes_everything():
    for log in (_logger("notset", logging.NOTSET, logging.WARNING), _logger("none")):
        _quiet_below_handlers(log)
        assert log.level == logging.DEBUG


def test_logger_is_never_opened_wider():
    log = _logger("error", logging.DEBUG)
    log.setLevel(logging.ERROR)
    _quiet_below_handlers(log)
    assert log.level == logging.ERROR
