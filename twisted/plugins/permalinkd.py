"""twistd plugin: ``twistd permalinkd``.  Everything lives in ``permalinkd.tap``."""
from twisted.application.service import ServiceMaker

permalinkd = ServiceMaker(
    "cellstack permalinkd",
    "permalinkd.tap",
    "The permalink service on replicated Redis (Sentinel).",
    "permalinkd",
)
