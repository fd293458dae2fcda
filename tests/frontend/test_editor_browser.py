"""The cell's code editor (issue 6) in headless Chromium against a real
``twistd cellserver``: CodeMirror 6 from static/build/editor.js by default
(Python highlighting, Shift+Enter, Tab completion through complete_request,
Shift+Tab help through inspect_request), the readonly and textarea modes, and
the textarea that stays when the bundle cannot load."""
from __future__ import annotations

import sys

import pytest

from tests.frontend.test_cell_browser import browser, page, server, shot, wait_state  # noqa: F401 (fixtures)
from tests.support.ports import free_port
from tests.support.procs import http_ok, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Editors</title>
<style>body {{ font-family: Georgia, serif; max-width: 50rem; margin: 1rem auto; color: #333; }}</style>
<script src="{server}embedded_sagecell.js"></script></head><body>
<div id="cm"><script type="text/x-sage">def f(x):
    return x + 1  # one more
print(f(41))</script></div>
<div id="ro"></div>
<div id="blank"></div>
<div id="lk"></div>
<script>
  window.cells = {{
    cm: sagecell.makeSagecell({{inputLocation: "#cm"}}),
    ro: sagecell.makeSagecell({{inputLocation: "#ro", editor: "codemirror-readonly", code: "print('read only')"}}),
    blank: sagecell.makeSagecell({{inputLocation: "#blank", code: ""}}),
    lk: sagecell.makeSagecell({{inputLocation: "#lk", code: "", linked: true}}),
  }};
</script></body></html>
"""

TEXTAREAS = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Textareas</title>
<script src="{server}embedded_sagecell.js"></script></head><body>
<div id="ta"></div><div id="tro"></div>
<script>
  window.cells = {{
    ta: sagecell.makeSagecell({{inputLocation: "#ta", editor: "textarea", code: "print('plain')"}}),
    tro: sagecell.makeSagecell({{inputLocation: "#tro", editor: "textarea-readonly", code: "print('fixed')"}}),
  }};
</script></body></html>
"""


@pytest.fixture(scope="module")
def site(server, module_children, tmp_path_factory):
    root = tmp_path_factory.mktemp("editor-site")
    (root / "editors.html").write_text(PAGE.format(server=server["base"]))
    (root / "textareas.html").write_text(TEXTAREAS.format(server=server["base"]))
    port = free_port()
    module_children.start("editor-site", [sys.executable, "-m", "http.server", str(port),
                                          "--bind", "127.0.0.2", "--directory", str(root)])
    base = f"http://127.0.0.2:{port}/"
    wait_until(lambda: http_ok(base + "editors.html"), 20, "the editor page's server")
    return base


@pytest.fixture
def errors(page):
    seen: list[str] = []
    page.on("pageerror", lambda e: seen.append(str(e)))
    yield seen
    assert not seen, seen


def code_of(page, name):
    return page.evaluate(f"cells.{name}.getCode()")


def wait_code(page, name, text, timeout=15_000):
    """Wait until editor ``name`` holds ``text``; on a timeout, say what it
    holds (a completion test failed once in CI with no clue why)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    try:
        page.wait_for_function(f"cells.{name}.getCode() === {text!r}", timeout=timeout)
    except PlaywrightTimeout:
        raise AssertionError(f"editor {name} holds {code_of(page, name)!r}, not {text!r}") from None


def open_editors(page, site):
    page.goto(site + "editors.html")
    for sel in ("#cm", "#ro", "#blank", "#lk"):
        page.wait_for_selector(f'{sel} .sagecell[data-editor="codemirror"] .cm-editor', timeout=15_000)


def type_into(page, sel, text):
    """Focus the cell's editor and type, as a person would (CodeMirror closes brackets)."""
    page.locator(f"{sel} .cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    page.keyboard.type(text)


def test_codemirror_is_the_default_and_highlights_python(site, page, errors):
    open_editors(page, site)
    assert page.locator("#cm textarea").count() == 0
    assert page.locator("#cm .cm-content").get_attribute("aria-label") == "Code"
    keywords = page.locator("#cm .cm-content .tok-keyword").all_inner_texts()
    assert "def" in keywords and "return" in keywords
    assert page.locator("#cm .cm-content .tok-comment").inner_text() == "# one more"
    assert page.locator("#cm .cm-content .tok-number").first.inner_text() == "1"
    color = page.locator("#cm .tok-keyword").first.evaluate("e => getComputedStyle(e).color")
    assert color == "rgb(207, 34, 46)"                      # cell.css colours the tokens
    assert page.locator("#cm .cm-lineNumbers .cm-gutterElement", has_text="3").count() == 1
    # Shift+Enter evaluates what the editor holds
    page.locator("#cm .cm-content").click()
    page.keyboard.press("Shift+Enter")
    wait_state(page, "#cm", "finished")
    assert page.locator("#cm .sagecell-output").inner_text().strip() == "42"
    type_into(page, "#cm", "print(6*7, 'typed')")
    assert code_of(page, "cm") == "print(6*7, 'typed')"  # the closing bracket was stepped over
    page.keyboard.press("Shift+Enter")
    page.wait_for_function("document.querySelector('#cm .sagecell-output').innerText.trim() === '42 typed'",
                           timeout=20_000)
    assert code_of(page, "cm") == "print(6*7, 'typed')"  # Shift+Enter inserted no newline
    # the old tests' way (Playwright's fill on .sagecell-editor) works on CodeMirror too
    page.locator("#cm .sagecell-editor").fill("print('filled')")
    page.locator("#cm .sagecell-editor").press("Shift+Enter")
    page.wait_for_function("document.querySelector('#cm .sagecell-output').innerText.trim() === 'filled'",
                           timeout=20_000)


def test_tab_completes_through_the_kernel_and_indents_at_line_start(site, page, errors):
    open_editors(page, site)
    # no kernel yet: Tab obtains one (which the next evaluation then uses)
    type_into(page, "#blank", "abcdef_long = 1\nabcdef_l")
    page.keyboard.press("Tab")
    wait_code(page, "blank", "abcdef_long = 1\nabcdef_long")
    # several matches: CodeMirror's list, Enter takes the selected one
    type_into(page, "#blank", "abcdef_long = 1\nabcdef_lot = 2\nabcdef_l")
    page.keyboard.press("Tab")
    popup = page.locator(".cm-tooltip-autocomplete")
    popup.wait_for(timeout=15_000)
    labels = sorted(t.strip() for t in popup.locator("li .cm-completionLabel").all_inner_texts())
    assert labels == ["abcdef_long", "abcdef_lot"]
    shot(page, "editor-completion")
    page.keyboard.type("ot")                 # the list narrows as one types
    page.wait_for_function("document.querySelectorAll('.cm-tooltip-autocomplete li').length === 1", timeout=5_000)
    page.keyboard.press("Enter")
    wait_code(page, "blank", "abcdef_long = 1\nabcdef_lot = 2\nabcdef_lot")
    # attribute completion from the kernel's own namespace
    type_into(page, "#blank", "import math\nmath.sqr")
    page.keyboard.press("Tab")
    wait_code(page, "blank", "import math\nmath.sqrt")
    # with nothing but blanks before the cursor, Tab indents by four spaces
    type_into(page, "#blank", "if True:\n")
    assert code_of(page, "blank") == "if True:\n    "   # CodeMirror indents after the colon
    page.keyboard.press("Tab")
    assert code_of(page, "blank") == "if True:\n        "
    page.keyboard.press("Shift+Tab")                   # (a name-less Shift+Tab: help says so, no change)
    assert code_of(page, "blank") == "if True:\n        "
    page.keyboard.press("Escape")
    # and the kernel got by Tab runs the next evaluation
    type_into(page, "#blank", "print('after completion')")
    page.keyboard.press("Shift+Enter")
    wait_state(page, "#blank", "finished")
    assert page.locator("#blank .sagecell-output").inner_text().strip() == "after completion"


def test_shift_tab_shows_the_docstring_and_escape_closes_it(site, page, errors):
    open_editors(page, site)
    type_into(page, "#blank", "n = len")
    page.keyboard.press("Shift+Tab")
    help_ = page.locator("#blank .cm-cellstack-help")
    help_.wait_for(timeout=15_000)
    assert "Return the number of items" in help_.inner_text()
    assert "\x1b" not in help_.inner_text()
    assert code_of(page, "blank") == "n = len"           # Shift+Tab changed nothing
    shot(page, "editor-help")
    page.keyboard.press("Escape")
    help_.wait_for(state="detached", timeout=5_000)
    # the help panel's close button (after Escape, CodeMirror lets the next Tab leave the
    # editor: any other key first keeps Tab in it)
    page.keyboard.press("End")
    page.keyboard.press("Shift+Tab")
    help_.wait_for(timeout=15_000)
    page.get_by_role("button", name="Close the help").click()
    help_.wait_for(state="detached", timeout=5_000)
    # IPython's "name?" with Shift+Enter: the pager text (execute_reply's payload) goes to the
    # output.  In a linked cell: a plain cell's kernel ends at the idle status, and an
    # execute_reply that the relay has not passed on by then is lost (a server-side race).
    type_into(page, "#lk", "len?")
    assert code_of(page, "lk") == "len?"
    page.keyboard.press("Shift+Enter")
    page.locator("#lk .sagecell-output .sagecell-page").wait_for(timeout=20_000)
    assert "Return the number of items" in page.locator("#lk .sagecell-output .sagecell-page").inner_text()


def test_codemirror_readonly_cannot_be_edited_but_runs(site, page, errors):
    open_editors(page, site)
    content = page.locator("#ro .cm-content")
    assert content.get_attribute("aria-readonly") == "true"
    content.click()
    page.keyboard.type("x = 1")
    page.keyboard.press("Enter")
    page.keyboard.press("Backspace")
    page.keyboard.press("Tab")
    assert code_of(page, "ro") == "print('read only')"
    page.keyboard.press("Shift+Enter")
    wait_state(page, "#ro", "finished")
    assert page.locator("#ro .sagecell-output").inner_text().strip() == "read only"


def test_textarea_modes_stay_textareas_and_never_load_the_bundle(site, page, errors):
    asked = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto(site + "textareas.html")
    ta = page.locator("#ta textarea.sagecell-editor")
    tro = page.locator("#tro textarea.sagecell-editor")
    assert ta.input_value() == "print('plain')" and tro.is_editable() is False
    ta.fill("print('still a textarea')")
    ta.press("Shift+Enter")
    wait_state(page, "#ta", "finished")
    assert page.locator("#ta .sagecell-output").inner_text().strip() == "still a textarea"
    tro.press("Shift+Enter")
    wait_state(page, "#tro", "finished")
    assert page.locator("#tro .sagecell-output").inner_text().strip() == "fixed"
    assert page.locator(".cm-editor").count() == 0
    assert not [u for u in asked if "editor.js" in u]


def test_text_typed_before_the_bundle_arrives_is_kept(site, page, errors):
    held = []
    page.route("**/static/build/editor.js", lambda route: held.append(route))
    with page.expect_request("**/static/build/editor.js", timeout=10_000):
        page.goto(site + "editors.html", wait_until="commit")  # "load" waits for the held script
    ta = page.locator("#blank textarea.sagecell-editor")
    ta.wait_for(timeout=10_000)
    ta.fill("print('early')")
    ta.evaluate("t => t.setSelectionRange(7, 12)")   # 'early' selected, focus in the textarea
    for _ in range(100):                            # bounded: the route handler runs between calls
        if held:
            break
        page.wait_for_timeout(20)
    assert held, "the request for editor.js was not held"
    assert page.locator(".cm-editor").count() == 0
    held[0].continue_()
    page.wait_for_selector('#blank .sagecell[data-editor="codemirror"]', timeout=15_000)
    assert code_of(page, "blank") == "print('early')"
    assert page.evaluate("document.activeElement.classList.contains('cm-content')")
    page.keyboard.type("late")                       # the selection came over too
    assert code_of(page, "blank") == "print('late')"


def test_bundle_that_cannot_load_leaves_working_textareas(site, page):
    page.route("**/static/build/editor.js", lambda route: route.abort())
    page.goto(site + "editors.html")
    ta = page.locator("#cm textarea.sagecell-editor")
    ta.wait_for(timeout=10_000)
    assert "def f(x):" in ta.input_value()
    ta.press("Shift+Enter")
    wait_state(page, "#cm", "finished")
    assert page.locator("#cm .sagecell-output").inner_text().strip() == "42"
    assert page.locator(".cm-editor").count() == 0


def test_delete_sagecell_destroys_the_editor(site, page, errors):
    open_editors(page, site)
    gone = page.evaluate("""() => {
        const c = cells.cm, view = c.codemirror.view;
        sagecell.deleteSagecell(c);
        return {connected: view.dom.isConnected, handle: c.codemirror, left: sagecell.cells.length};
    }""")
    assert gone == {"connected": False, "handle": None, "left": 3}
    assert page.locator("#cm .cm-editor").count() == 0


def test_editor_at_200_percent_zoom(server, site, browser):
    # 200% zoom: half the CSS pixels of a 1000 px window, each drawn twice as large
    ctx = browser.new_context(viewport={"width": 500, "height": 600}, device_scale_factor=2)
    pg = ctx.new_page()
    try:
        open_editors(pg, site)
        pg.locator("#cm .cm-content").click()
        pg.keyboard.press("Control+End")
        pg.keyboard.press("Shift+Enter")
        wait_state(pg, "#cm", "finished")
        box = pg.locator("#cm .cm-editor").bounding_box()
        root = pg.locator("#cm .sagecell").bounding_box()
        assert box["x"] >= root["x"] and box["x"] + box["width"] <= root["x"] + root["width"] + 1
        outline = pg.locator("#cm .cm-editor").evaluate("e => getComputedStyle(e).outlineStyle")
        assert outline == "solid"                           # the focus ring
        shot(pg, "editor-zoom-200")
    finally:
        ctx.close()
