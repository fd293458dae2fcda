"""Fixtures shared by every test package.

``children``: start real processes (twistd nodes, redis-server, ...); all are
killed by PID when the test ends.  Unit tests never touch the global reactor;
integration tests that need it use pytest-twisted (``pytest_twisted.ensureDeferred``).
"""
from __future__ import annotations

import os

import pytest
from hypothesis import settings

from tests.support.procs import Children

# Property tests check behaviour, not speed: hypothesis' default 200 ms
# per-example deadline is a timed test, and fails on a loaded CI machine.
settings.register_profile("cellstack", deadline=None)
settings.load_profile("cellstack")


@pytest.fixture
def children(request):
    kids = Children(label=request.node.name.replace("/", "_")[:60])
    yield kids
    kids.stop_all()


@pytest.fixture(scope="module")
def module_children(request):
    kids = Children(label=request.module.__name__.rsplit(".", 1)[-1])
    yield kids
    kids.stop_all()


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root (sandbox accounts, cgroups); run the suite as root as CI does")
        for item in items:
            if "root" in item.keywords:
                item.add_marker(skip)


def pytest_sessionfinish(session, exitstatus):
    from tests.support.procs import remove_runtime_dirs
    remove_runtime_dirs()
