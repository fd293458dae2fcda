"""(issue 6) Pages written for SageMathCell work unchanged against our server:
SageMathCell's documented embedding example (its doc/embedding.rst) as
written, calling makeSagecell from <head> with ``sagecell.templates.minimal``
and a selector that matches several elements; and ``<link
property="sagecell-root">``, which names the server whatever the script's URL.
Real headless Chromium, a real ``twistd cellserver``, the pages on another
origin."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.frontend.test_cell_browser import shot, wait_state
from tests.frontend.test_editor_browser import errors  # noqa: F401 (fixture: no uncaught page errors)
from tests.support.browser import browser, page  # noqa: F401 (fixtures)
from tests.support.embedding import cell_server_and_site

pytestmark = [pytest.mark.integration, pytest.mark.browser]
SCRIPT = Path(__file__).resolve().parents[2] / "cellserver" / "static" / "embedded_sagecell.js"

# SageMathCell's doc/embedding.rst "Example", verbatim but for the server's URL
# (the doc's is https://sagecell.sagemath.org/static/embedded_sagecell.js).
DOC_EXAMPLE = """<!DOCTYPE HTML>
<html>
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width">
    <title>SageMathCell</title>
    <script src="{server}static/embedded_sagecell.js"></script>
    <script>
    // Make the div with id 'mycell' a Sage cell
    sagecell.makeSagecell({{inputLocation:  '#mycell',
                           template:       sagecell.templates.minimal,
                           evalButtonText: 'Activate'}});
    // Make *any* div with class 'compute' a Sage cell
    sagecell.makeSagecell({{inputLocation: 'div.compute',
                           evalButtonText: 'Evaluate'}});
    </script>
  </head>
  <body>
  <h1>Embedded Sage Cells</h1>

  <h2>Factorial</h2>
  Click the &ldquo;Activate&rdquo; button below to calculate factorials.
    <div id="mycell"><script type="text/x-sage">
@interact
def _(a=(1, 10)):
    print factorial(a)
 </script>
</div>

<h2>Your own computations</h2>
Type your own Sage computation below and click &ldquo;Evaluate&rdquo;.
    <div class="compute"><script type="text/x-sage">plot(sin(x), (x, 0, 2*pi))</script></div>
    <div class="compute"><script type="text/x-sage">
@interact
def f(n=(0,10)):
    print 2^n
</script></div>
  </body>
</html>
"""

# The same calls, keeping what makeSagecell returns, and a form's textarea made live.
RETURNS = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Returns</title>
<script src="{server}static/embedded_sagecell.js"></script>
<script>
  window.one = sagecell.makeSagecell({{inputLocation: '#one', template: sagecell.templates.restricted}});
  window.many = sagecell.makeSagecell({{inputLocation: 'div.many'}});
  window.none = sagecell.makeSagecell({{inputLocation: '#nothing-here'}});
  window.early = {{one: Object.keys(window.one).length, many: Object.keys(window.many).length}};
  // older SageMathCell pages wait with sagecell.init(callback)
  sagecell.init(function () {{ window.initSaw = document.querySelectorAll('div.many').length; }});
</script></head><body>
<div id="one">print('one')</div><div class="many">print('a')</div><div class="many">print('b')</div>
<form id="f"><textarea name="code" id="ta">print('from the form')</textarea></form>
<script>window.ta = sagecell.makeSagecell({{inputLocation: '#ta'}});</script>
</body></html>
"""

# The script from somewhere else (this site, under /static/ even), the server named
# by the link: the link wins.
LINKED_ROOT = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Root link</title>
<link property="sagecell-root" href="{server}">
<script src="static/embedded_sagecell.js"></script>
</head><body><div id="c">print('served by', 6 * 7)</div>
<script>sagecell.makeSagecell({{inputLocation: '#c'}});</script></body></html>
"""

# The link after the script (still in <head>): it counts too.
LATE_LINK = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Late link</title>
<script src="lib/embedded_sagecell.js"></script>
<link property="sagecell-root" href="{server}">
</head><body><div id="c">print('late link')</div>
<script>sagecell.makeSagecell({{inputLocation: '#c'}});</script></body></html>
"""


@pytest.fixture(scope="module")
def server(module_children, tmp_path_factory):
    site = tmp_path_factory.mktemp("fe-compat") / "site"
    for sub in ("static", "lib"):
        (site / sub).mkdir(parents=True)
    js = SCRIPT.read_text()
    return cell_server_and_site(
        module_children, site, "fc1",
        lambda base: {"example.html": DOC_EXAMPLE.format(server=base), "returns.html": RETURNS.format(server=base),
                      "root.html": LINKED_ROOT.format(server=base), "late.html": LATE_LINK.format(server=base),
                      "static/embedded_sagecell.js": js, "lib/embedded_sagecell.js": js},
        ["--ready-kernels", "3", "--max-kernels", "12", "--kernels-per-session", "6"])


def test_the_sagemathcell_documentation_example_works_as_written(server, page, errors):
    page.goto(server["embed"] + "example.html")
    page.wait_for_selector("div.compute .sagecell-evaluate")
    assert page.evaluate("Object.keys(sagecell.templates).sort()") == ["minimal", "restricted"]
    # '#mycell' with the minimal template: an "Activate" button, no code, no Share
    mine = page.locator("#mycell")
    assert mine.get_by_role("button", name="Activate").count() == 1
    assert mine.locator("textarea, .sagecell-cm").count() == 0
    assert mine.locator(".sagecell-share").count() == 0
    # 'div.compute': one cell per matching element, each with its code and an Evaluate button
    compute = page.locator("div.compute")
    assert compute.count() == 2
    for i in range(2):
        assert compute.nth(i).locator(".sagecell").count() == 1
        assert compute.nth(i).get_by_role("button", name="Evaluate").count() == 1
    page.wait_for_selector("div.compute .cm-editor")
    assert "plot(sin(x)" in compute.nth(0).locator(".cm-content").inner_text()
    assert "2^n" in compute.nth(1).locator(".cm-content").inner_text()
    assert page.evaluate("sagecell.cells.map(c => c.getCode())") == [
        "@interact\ndef _(a=(1, 10)):\n    print factorial(a)", "plot(sin(x), (x, 0, 2*pi))",
        "@interact\ndef f(n=(0,10)):\n    print 2^n"]                   # the markup's blank lines are not code
    # Activate runs the hidden code on our server (a Python kernel: the doc's Python 2
    # print is a SyntaxError, shown as such)
    mine.get_by_role("button", name="Activate").click()
    wait_state(page, "#mycell", "error")
    assert "SyntaxError" in mine.locator(".sagecell-output").inner_text()
    # a reader types their own computation into the first compute cell
    compute.nth(0).locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.type("print(2**10)")
    compute.nth(0).get_by_role("button", name="Evaluate").click()
    page.wait_for_selector('div.compute .sagecell[data-state="finished"]', timeout=20_000)
    assert compute.nth(0).locator(".sagecell-output").inner_text().strip() == "1024"
    assert compute.nth(1).locator(".sagecell-output").inner_text().strip() == ""
    shot(page, "sagemathcell-doc-example")


def test_make_sagecell_returns_what_sagemathcell_returns(server, page, errors):
    page.goto(server["embed"] + "returns.html")
    page.wait_for_selector("#f .sagecell-evaluate")
    # called in <head>: the objects are filled in once the document is parsed
    assert page.evaluate("early") == {"one": 0, "many": 0}
    assert page.evaluate("initSaw") == 2                                # init's callback: the page parsed
    assert page.evaluate("typeof one.evaluate") == "function"             # one match: the cell
    assert page.evaluate("many.array.length") == 2                        # several: {array: [...]}
    assert page.evaluate("Object.keys(none)") == []                       # none: nothing, no error
    assert page.evaluate("many.array.map(c => c.getCode())") == ["print('a')", "print('b')"]
    # restricted: the code shown read-only, no Share
    assert page.locator("#one .sagecell-share").count() == 0
    page.wait_for_selector("#one .sagecell-cm-readonly")
    # the form's textarea: its code, the textarea kept (hidden) in the form
    assert page.evaluate("ta.getCode()") == "print('from the form')"
    assert page.locator("#f textarea#ta").count() == 1 and not page.locator("#ta").is_visible()
    page.locator("#f .sagecell-evaluate").click()
    page.wait_for_selector('#f .sagecell[data-state="finished"]', timeout=20_000)
    assert page.locator("#f .sagecell-output").inner_text().strip() == "from the form"
    page.evaluate("many.array[1].evaluate()")
    page.locator("div.many").nth(1).locator('.sagecell[data-state="finished"]').wait_for(timeout=20_000)
    assert page.locator("div.many").nth(1).locator(".sagecell-output").inner_text().strip() == "b"
    # a second makeSagecell on the same elements leaves them alone
    assert page.evaluate("Object.keys(sagecell.makeSagecell({inputLocation: 'div.many'}))") == []
    assert page.locator("div.many .sagecell").count() == 2
    # deleteSagecell takes the {array} object too
    page.evaluate("sagecell.deleteSagecell(many)")
    assert page.locator("div.many .sagecell").count() == 0


@pytest.mark.parametrize("name", ["root.html", "late.html"])
def test_the_sagecell_root_link_names_the_server(server, page, errors, name):
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(server["embed"] + name)
    assert page.evaluate("sagecell.root") == server["base"]
    page.locator("#c .sagecell-evaluate").click()
    wait_state(page, "#c", "finished")
    expected = "served by 42" if name == "root.html" else "late link"
    assert page.locator("#c .sagecell-output").inner_text().strip() == expected
    assert posts and all(u.startswith(server["base"]) for u in posts)
    # the cell's style and editor came from the server too, not from the script's site
    assert page.evaluate("[...document.querySelectorAll('link[data-cellstack]')].map(l => l.href)") == [
        server["base"] + "static/cell.css"]
