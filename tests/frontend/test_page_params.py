"""The standalone page's parameters that Share's links carry (no browser)."""
from __future__ import annotations

import json

from cellserver.page import encode_z, interacts_arg, render


def test_interacts_parameter_is_json_or_z_encoded_json():
    state = json.dumps([{"x": 37}])
    assert interacts_arg(state) == state
    assert interacts_arg(encode_z(state)) == state
    assert interacts_arg(encode_z(state) + "==") == state       # padding optional
    for bad in (None, "", "not-z-at-all!", encode_z("not json"), "[1,"):
        assert interacts_arg(bad) is None


def _preload(page: bytes) -> dict:
    text = page.decode()
    blob = text.split("var preload = ", 1)[1].split(";\n", 1)[0]
    return json.loads(blob)


def test_a_broken_link_never_autoevaluates():
    assert _preload(render({"code": "1", "autoeval": True}))["autoeval"] is True
    assert _preload(render({"code": "", "autoeval": True}, "This link is damaged."))["autoeval"] is False
