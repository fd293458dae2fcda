"""(issue 6) What the reader sees while code runs, in a real headless Chromium
against a real ``twistd cellserver``, the cell on a page of another origin:
the running clock, a second Evaluate while busy (the running one interrupted,
the new one queued until the kernel is free), Stop (interrupted),
output of an abandoned request never shown, clear_output(wait=True), and
application/javascript output run inside the sandboxed iframe, not the page."""
from __future__ import annotations

import re
import time

import pytest

from tests.frontend.test_cell_browser import server, shot_of, status, wait_state  # noqa: F401 (fixture)
from tests.support.browser import browser, page  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.browser]

# Every text the output area of #one shows, after each change (a MutationObserver):
# what a reader could have seen, however briefly.
WATCH = """() => {
  window.seen = [];
  const out = document.querySelector('#one .sagecell-output');
  new MutationObserver(() => window.seen.push(out.innerText)).observe(out, {childList: true, subtree: true,
                                                                          characterData: true});
}"""


def open_watched(page, server):
    """The course page, its first cell ready, its output area watched (WATCH)."""
    page.goto(server["embed"])
    page.wait_for_selector("#one .sagecell-evaluate")
    page.evaluate(WATCH)


def run(page, code):
    page.evaluate("c => { cells.one.setCode(c); cells.one.evaluate(); }", code)


def output(page):
    return page.locator("#one .sagecell-output").inner_text().strip()


def seconds(page) -> float:
    text = status(page, "#one").inner_text().strip()
    m = re.fullmatch(r"running (\d+\.\d) s", text)
    assert m, text
    return float(m.group(1))


def test_running_shows_a_growing_clock_and_stop_interrupts(server, page):
    page.goto(server["embed"])
    page.wait_for_selector("#one .sagecell-evaluate")
    run(page, "import time\nwhile True: time.sleep(0.05)")
    wait_state(page, "#one", "running")
    first = seconds(page)
    page.wait_for_function("t => { const m = /running (\\d+\\.\\d) s/.exec("
                           "document.querySelector('#one .sagecell-status').textContent);"
                           " return m && parseFloat(m[1]) >= t + 0.5; }", arg=first, timeout=10_000)
    later = seconds(page)
    assert later >= first + 0.5
    assert page.locator("#one .sagecell-stop").is_enabled()
    page.locator("#one .sagecell-stop").click()
    wait_state(page, "#one", "interrupted")
    assert status(page, "#one").inner_text().strip() == "interrupted"
    assert "KeyboardInterrupt" in output(page)
    assert page.locator("#one .sagecell-stop").is_disabled()
    time.sleep(0.3)
    assert status(page, "#one").inner_text().strip() == "interrupted"      # the clock stopped with it
    shot_of(page.locator("#one .sagecell"), "interrupted")


# Every text the status line of #one shows, with when (ms, performance.now()).
WATCH_STATUS = """() => {
  window.states = [];
  const s = document.querySelector('#one .sagecell-status');
  new MutationObserver(() => window.states.push([performance.now(), s.textContent])).observe(s,
    {childList: true, subtree: true, characterData: true});
}"""


def received(page) -> list[str]:
    """The websocket frames the page receives from now on (the list fills as they come):
    proof that output a test expects dropped did reach the browser."""
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
    return frames


def test_a_second_evaluate_while_busy_is_queued_then_runs_alone(server, page):
    """The design (cellserver/scheduler.py): a new evaluation interrupts the running one
    and waits ("queued") until the kernel is free.  The first here takes its time to
    stop (1.5 s), so the wait is long enough to see; its clock must not tick over "queued"."""
    frames = received(page)
    open_watched(page, server)
    run(page, "import time\ntry:\n    print('go', flush=True)\n    time.sleep(30)\nexcept KeyboardInterrupt:\n"
              "    time.sleep(1.5)\n    print('first cleaned up')")
    # inside the try (its print done) before the second press: the interrupt meets the sleep
    page.wait_for_function("() => document.querySelector('#one .sagecell-output').innerText.includes('go')",
                           timeout=20_000)
    # watched from the press on (the first's ticks before it are its own)
    page.evaluate(f"() => {{ ({WATCH_STATUS})(); cells.one.setCode(\"print('second')\"); cells.one.evaluate(); }}")
    wait_state(page, "#one", "queued")
    shot_of(page.locator("#one .sagecell"), "queued")
    wait_state(page, "#one", "finished")
    assert output(page) == "second"
    states = page.evaluate("window.states")
    states = states[next(i for i, (_, text) in enumerate(states) if text == "queued"):]
    queued_at = states[0][0]
    left = next(t for t, text in states if text != "queued")
    assert left - queued_at >= 1000, states          # queued while the first cleaned up (1.5 s)
    for t, text in states:
        m = re.fullmatch(r"running (\d+\.\d) s", text)
        # only the second's own clock, counted from when it started: never the first's
        assert not m or float(m.group(1)) <= (t - left) / 1000 + 0.2, states
    assert any("first cleaned up" in f for f in frames)    # it was printed, and reached the page...
    seen = page.evaluate("window.seen")
    assert not any("first" in s for s in seen), seen       # ...but the interrupted one's output was dropped


def test_output_of_an_abandoned_request_is_never_shown(server, page):
    """The first run prints once more when the second press interrupts it ('late'), while
    the second waits: output the browser receives (checked) but must never show."""
    frames = received(page)
    page.goto(server["embed"])
    page.wait_for_selector("#one .sagecell-evaluate")
    run(page, "import time\ntry:\n    print('A', flush=True)\n    time.sleep(30)\n"
              "except KeyboardInterrupt:\n    print('late', flush=True)\n    time.sleep(0.5)")
    page.wait_for_function("() => document.querySelector('#one .sagecell-output').innerText.includes('A')",
                           timeout=20_000)
    page.evaluate(WATCH)
    run(page, "print('new')")
    wait_state(page, "#one", "finished")
    assert output(page) == "new"
    assert any("late" in f for f in frames)          # printed after the second press, before 'new'
    # the abandoned request's output: 'A' went with it at the second press, 'late'
    # (printed while the second waited) never appeared, not even for a moment
    seen = page.evaluate("window.seen")
    assert seen and not any("late" in s or "A" in s for s in seen), seen
    # the same when the second press comes before the first's output has arrived (so
    # early that the interrupt may come before the first has started, and be lost: then
    # the first ends by itself, 'late2' all the same)
    page.evaluate(WATCH)
    page.evaluate("""() => { cells.one.setCode("import time\\ntry:\\n    print('A2', flush=True)\\n    time.sleep(3)\\n" +
                                                "except KeyboardInterrupt:\\n    pass\\nprint('late2', flush=True)");
                             cells.one.evaluate(); cells.one.setCode("print('new2')"); cells.one.evaluate(); }""")
    wait_state(page, "#one", "finished")
    assert output(page) == "new2"
    assert any("late2" in f for f in frames)
    seen = page.evaluate("window.seen")
    assert not any("A2" in s or "late2" in s for s in seen), seen


def test_clear_output_wait_replaces_without_a_blank_moment(server, page):
    open_watched(page, server)
    run(page, "from IPython.display import clear_output\nimport time\nfor i in range(4):\n"
              "    clear_output(wait=True)\n    print('step', i, flush=True)\n    time.sleep(0.3)")
    wait_state(page, "#one", "finished")
    assert output(page) == "step 3"
    seen = [s.strip() for s in page.evaluate("window.seen")]
    shown = [s for s in seen if s]
    assert shown and all(re.fullmatch(r"step \d", s) for s in shown), seen     # one step at a time
    first = seen.index("step 0")
    assert "" not in seen[first:], seen            # cleared only when the next output came


def test_javascript_output_runs_in_the_sandboxed_frame_not_the_page(server, page):
    page.goto(server["embed"])
    page.wait_for_selector("#one .sagecell-evaluate")
    run(page, "from IPython.display import Javascript, display\n"
              "display(Javascript('''document.body.insertAdjacentHTML('beforeend', '<p id=\"ran\">ran: ' + (6 * 7) + '</p>');\n"
              "try { parent.document.title = 'hacked'; } catch (e) {\n"
              "  document.body.insertAdjacentHTML('beforeend', '<p id=\"blocked\">' + e.name + '</p>'); }\n"
              "try { document.cookie = 'x=1'; } catch (e) {\n"
              "  document.body.insertAdjacentHTML('beforeend', '<p id=\"nocookie\">' + e.name + '</p>'); }'''))")
    wait_state(page, "#one", "finished")
    frame = page.locator("#one iframe.sagecell-frame-js")
    assert frame.count() == 1 and frame.get_attribute("sandbox") == "allow-scripts"
    inside = page.frame_locator("#one iframe.sagecell-frame-js")
    assert inside.locator("#ran").inner_text() == "ran: 42"
    assert inside.locator("#blocked").inner_text() == "SecurityError"     # the page is another origin to it
    assert inside.locator("#nocookie").inner_text() == "SecurityError"    # no cookies of its own either
    assert page.title() == "A course page"
    assert page.locator("#ran").count() == 0                             # nothing landed in the page itself
    page.wait_for_function("() => document.querySelector('#one iframe.sagecell-frame-js').offsetHeight > 30")
