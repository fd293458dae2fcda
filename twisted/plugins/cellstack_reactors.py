"""``twistd --reactor=cellstack-edge``: the edge's epoll reactor (edgeproxy.reactor)."""
from twisted.application.reactors import Reactor

edge = Reactor("cellstack-edge", "edgeproxy.reactor",
               "epoll(4) without the legacy per-event log context (cellstack's edge)")
