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


def test_a_second_evaluate_while_busy_is_queued_then_runs_alone(server, page):
    """The design (cellserver/scheduler.py): a new evaluation interrupts the running one
    and waits ("queued") until the kernel is free.  The first here takes its time to
    stop, so the wait is long enough to see; its clock must not tick over "queued"."""
    open_watched(page, server)
    run(page, "import time\ntry:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n"
              "    time.sleep(1.5)\n    print('first cleaned up')")
    wait_state(page, "#one", "running")
    time.sleep(0.3)
    run(page, "print('second')")
    wait_state(page, "#one", "queued", timeout=2_000)
    time.sleep(0.6)
    assert status(page, "#one").inner_text().strip() == "queued"
    shot_of(page.locator("#one .sagecell"), "queued")
    wait_state(page, "#one", "finished")
    assert output(page) == "second"
    time.sleep(0.3)
    seen = page.evaluate("window.seen")
    assert not any("first" in s for s in seen), seen       # the interrupted one's output: dropped


def test_output_of_an_abandoned_request_is_never_shown(server, page):
    page.goto(server["embed"])
    page.wait_for_selector("#one .sagecell-evaluate")
    run(page, "print('A', flush=True); import time; time.sleep(1); print('late')")
    page.wait_for_function("() => document.querySelector('#one .sagecell-output').innerText.includes('A')",
                           timeout=20_000)
    page.evaluate(WATCH)
    run(page, "print('new')")
    wait_state(page, "#one", "finished")
    assert output(page) == "new"
    time.sleep(0.5)
    # the abandoned request's output: 'A' went with it at the second press, 'late'
    # (printed while the second waited) never appeared, not even for a moment
    seen = page.evaluate("window.seen")
    assert seen and not any("late" in s or "A" in s for s in seen), seen
    # the same when the second press comes before the first's output has arrived
    page.evaluate(WATCH)
    page.evaluate("""() => { cells.one.setCode("print('A2', flush=True); import time; time.sleep(1); print('late2')");
                             cells.one.evaluate(); cells.one.setCode("print('new2')"); cells.one.evaluate(); }""")
    wait_state(page, "#one", "finished")
    assert output(page) == "new2"
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
