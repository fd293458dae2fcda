"""Issue 6: after an execution, the kernel lists the files it created or changed.

Unit tests of ``cellserver.filewatch`` (the snapshot walk and comparison),
then real kernels through the cell server API: a file written publishes one
``display_data`` with ``application/x-cellstack-files`` (parent: the
execution), ``1+1`` publishes nothing, and the listed paths are fetchable
under ``/kernel/<id>/files/``.
"""
from __future__ import annotations

import json
import os
import urllib.parse

import pytest
import pytest_twisted
import treq

from cellserver import filewatch
from tests.cellserver.test_api_integration import (delete_kernels_after_test, open_kernel,  # noqa: F401
                                                   server)

MIME = filewatch.MIME


# ---- unit ---------------------------------------------------------------------------
def test_snapshot_lists_files_skips_hidden_pycache_and_skipped_dirs(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    (tmp_path / "sub" / "deep" / "b.csv").write_text("bb")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x").write_text("x")
    (tmp_path / ".hidden").write_text("h")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "m.pyc").write_text("c")
    (tmp_path / "ipy").mkdir()
    (tmp_path / "ipy" / "profile.py").write_text("p")
    os.symlink("/etc/passwd", tmp_path / "link")
    files, cut = filewatch.snapshot(str(tmp_path), skip=frozenset({os.path.realpath(tmp_path / "ipy")}))
    assert not cut
    assert set(files) == {"a.txt", "sub/deep/b.csv"}
    assert files["sub/deep/b.csv"][0] == 2


def test_snapshot_is_bounded(tmp_path):
    for i in range(30):
        (tmp_path / f"f{i}").write_text("x")
    files, cut = filewatch.snapshot(str(tmp_path), limit=10)
    assert cut and len(files) <= 10


def test_changed_reports_new_and_modified_not_deleted_or_same():
    before = {"same": (1, 10), "mod": (1, 10), "gone": (1, 10)}
    after = {"same": (1, 10), "mod": (2, 20), "new": (3, 5)}
    assert filewatch.changed(before, after) == ["mod", "new"]
    assert filewatch.changed(before, after, since_ns=15) == ["mod"]      # a cut walk trusts mtimes only


def test_bundle_caps_the_list_and_has_a_text_fallback():
    paths = [f"f{i:03}" for i in range(filewatch.MAX_REPORT + 7)]
    b = filewatch.bundle(paths)
    assert b[MIME]["files"] == paths[:filewatch.MAX_REPORT] and b[MIME]["more"] == 7
    assert b["text/plain"].startswith("Files written: f000, f001") and b["text/plain"].endswith("(and 7 more)")


def test_each_execution_is_compared_with_the_directory_after_the_previous_one(tmp_path, monkeypatch):
    published = []
    import IPython.display
    monkeypatch.setattr(IPython.display, "publish_display_data", lambda data, metadata: published.append(data))
    (tmp_path / "old.txt").write_text("there before the kernel")
    filewatch.set_root(str(tmp_path))          # the first snapshot: when the kernel starts
    try:
        (tmp_path / "a.txt").write_text("1")
        filewatch.post_run_cell(None)
        filewatch.post_run_cell(None)           # an execution that wrote nothing
        (tmp_path / "b.txt").write_text("2")
        filewatch.post_run_cell(None)
    finally:
        filewatch.set_root(None)
    assert [p[MIME]["files"] for p in published] == [["a.txt"], ["b.txt"]]
    assert not hasattr(filewatch, "pre_run_cell")      # an interrupt there would be swallowed


# ---- real kernels through the cell server ------------------------------------------------
def files_of(msgs):
    return [m for m in msgs if m["msg_type"] == "display_data" and MIME in m["content"]["data"]]


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_a_kernel_lists_the_files_an_execution_wrote(server):
    info, ws = await open_kernel(server["base"])
    try:
        msgs = await ws.run("1+1")
        assert files_of(msgs) == []
        mid = ws.execute("open('out.txt', 'w').write('hi')\n"
                         "import os; os.makedirs('data/sub dir', exist_ok=True)\n"
                         "open('data/sub dir/r\u00e9sum\u00e9 #1.csv', 'w').write('a,b\\n')\n"
                         "open('.secret', 'w').write('x')")
        msgs = await ws.finished(mid)
        shown = files_of(msgs)
        assert len(shown) == 1, msgs
        d = shown[0]
        assert d["parent_header"]["msg_id"] == mid
        assert d["content"]["data"][MIME] == {"files": ["data/sub dir/r\u00e9sum\u00e9 #1.csv", "out.txt"], "more": 0}
        assert "out.txt" in d["content"]["data"]["text/plain"]
        # The idle status comes after the list (a front end can still act on it).
        kinds = [(m["msg_type"], m["content"].get("execution_state")) for m in msgs if m["channel"] == "iopub"]
        assert kinds.index(("display_data", None)) < kinds.index(("status", "idle"))
        # Each listed path is served, percent-encoded per segment as the front end does it.
        for path, body in (("out.txt", b"hi"), ("data/sub dir/r\u00e9sum\u00e9 #1.csv", b"a,b\n")):
            url = server["base"] + f"kernel/{info['id']}/files/" + "/".join(
                urllib.parse.quote(seg, safe="") for seg in path.split("/"))
            resp = await treq.get(url)
            assert resp.code == 200 and await resp.content() == body, url
        # Nothing new: nothing listed; a modified file: listed again (alone).
        msgs = await ws.run("x = open('out.txt').read()")
        assert files_of(msgs) == []
        msgs = await ws.run("open('out.txt', 'a').write(' again')")
        assert [m["content"]["data"][MIME]["files"] for m in files_of(msgs)] == [["out.txt"]]
        # Silent executions (the front end's helpers) publish nothing.
        sid = ws.send("execute_request", {"code": "open('quiet.txt', 'w').write('q')", "silent": True,
                                          "store_history": False, "user_expressions": {}, "allow_stdin": False})
        msgs = await ws.finished(sid)
        assert files_of(msgs) == []
    finally:
        ws.close()


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_many_files_are_capped_at_fifty_with_a_count_of_the_rest(server):
    info, ws = await open_kernel(server["base"])
    try:
        msgs = await ws.run("for i in range(60): open(f'f{i:02}.txt', 'w').write(str(i))")
        (d,) = files_of(msgs)
        listing = d["content"]["data"][MIME]
        assert listing["files"] == [f"f{i:02}.txt" for i in range(50)] and listing["more"] == 10
        assert json.dumps(d).count("f59") == 0
    finally:
        ws.close()
