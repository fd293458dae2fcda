"""The standalone page's parameters that Share's links carry (no browser)."""
from __future__ import annotations

import json

from cellserver.page import LANGUAGES, encode_z, interacts_arg, language, render


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


def test_a_language_this_server_does_not_run_falls_back_with_a_note():
    assert LANGUAGES[0] == "python"
    assert language("python") == ("python", "")
    assert language(None) == ("python", "")
    lang, note = language("sage")
    assert lang == "python" and "sage" in note
    page = render({"code": "1", "lang": "sage", "autoeval": True})
    got = _preload(page)
    assert got["lang"] == "python" and got["languages"] == list(LANGUAGES)
    assert got["autoeval"] is True                              # the link still works
    assert b'class="notice info" role="status"' in page and b"sage" in page
    plain = render({"code": "1", "lang": "python", "autoeval": False})
    assert b"notice" not in plain.split(b"<main>", 1)[1].split(b"<div id=\"cell\">", 1)[0]
    assert b"<script>alert" not in render({"code": "", "lang": "<script>alert(1)</script>"})
