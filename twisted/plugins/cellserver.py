"""twistd plugin: ``twistd cellserver``.  Everything lives in ``cellserver.tap``."""
from twisted.application.service import ServiceMaker

cellserver = ServiceMaker(
    "cellstack cellserver",
    "cellserver.tap",
    "A cell server: hands out sandboxed Jupyter kernels and relays their messages (SageMathCell API).",
    "cellserver",
)
