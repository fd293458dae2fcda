"""Conventions every cellstack node shares (configuration, JSON-lines logs,
client addresses behind trusted proxies, JSON error bodies) and the tools
that launch and supervise nodes (``deploy/cluster``, ``deploy/install``)."""
