"""``POST /service`` from a test, blocking (urllib): the escape batteries run
one hostile snippet after the other against a real cell server."""
from __future__ import annotations

import json
import urllib.parse
import urllib.request


def run(server: dict, code: str) -> dict:
    """The JSON answer of ``server["base"]``'s /service for ``code``."""
    data = urllib.parse.urlencode({"code": code}).encode()
    with urllib.request.urlopen(urllib.request.Request(server["base"] + "service", data=data), timeout=30) as r:
        return json.loads(r.read())


def error_of(result: dict) -> tuple[str, str]:
    """(exception name, value) the code raised, ("", "") when none."""
    reply = result["execute_reply"]
    return reply.get("ename", ""), reply.get("evalue", "")
