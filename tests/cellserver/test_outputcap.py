from cellserver.outputcap import OutputCap, Verdict


def test_cap_sends_one_notice_then_drops_and_keeps_status():
    cap = OutputCap(limit=100)
    assert cap.account("iopub", "stream", "m1", 60) is Verdict.PASS
    assert cap.account("iopub", "stream", "m1", 60) is Verdict.NOTICE
    assert cap.account("iopub", "stream", "m1", 1) is Verdict.DROP
    assert cap.account("iopub", "status", "m1", 10_000) is Verdict.PASS
    assert cap.account("shell", "execute_reply", "m1", 10_000) is Verdict.PASS
    assert cap.account("iopub", "stream", "m2", 60) is Verdict.PASS   # other requests unaffected


def test_finished_requests_are_forgotten_and_tracking_is_bounded():
    cap = OutputCap(limit=100, max_tracked=3)
    cap.account("iopub", "stream", "m1", 50)
    cap.finished("m1")
    assert cap.used("m1") == 0
    for i in range(10):
        cap.account("iopub", "stream", f"x{i}", 1)
    assert len(cap._used) <= 3
