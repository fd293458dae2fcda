"""twistd plugin: ``twistd edgeproxy``.  Everything lives in ``edgeproxy.tap``."""
from twisted.application.service import ServiceMaker

edgeproxy = ServiceMaker(
    "cellstack edgeproxy",
    "edgeproxy.tap",
    "The edge: TLS, rate limits, health checks and routing in front of cell servers and permalinkd.",
    "edgeproxy",
)
