"""(issue 6) The makeSagecell options and the output kinds, in a real headless
Chromium against a real ``twistd cellserver``, the cells embedded in pages of
another origin: outputLocation, codeLocation, code from a textarea and from
plain text, autoeval, hide, callback, linkKey, languages/defaultLanguage; and
stdout/stderr interleaving, ANSI colours, SVG, clear_output,
update_display_data and text/latex without MathJax and with it (the page's
own, and the standalone page's bundled one)."""
from __future__ import annotations


import pytest

from tests.frontend.test_cell_browser import SHOTS, shot, wait_state  # noqa: F401
from tests.support.browser import CHROMIUM, browser, page  # noqa: F401 (fixtures)
from tests.support.embedding import cell_server_and_site

pytestmark = [pytest.mark.integration, pytest.mark.browser]

HEAD = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body {{ font-family: Georgia, serif; max-width: 50rem; margin: 2rem auto; color: #333; }}
.box {{ border: 1px dashed #999; padding: 0.3rem; margin: 0.3rem 0; }}</style>
<script src="{server}embedded_sagecell.js"></script></head><body>
"""

OPTIONS = HEAD + """<h1>Options</h1>
<p>outputLocation:</p><div id="loc-in">print('went elsewhere')</div>
<p>(some prose between)</p><div id="loc-out" class="box"></div>
<p>codeLocation:</p><pre id="src">print('from ' + 'elsewhere')</pre><div id="codeloc">print('not this')</div>
<p>textarea:</p><div id="ta"><textarea>print('from a textarea')</textarea></div>
<p>plain text:</p><div id="plain">print('plain ' + 'text')</div>
<p>autoeval:</p><div id="auto">print('ran on load')</div>
<p>hide editor:</p><div id="noed">print('no editor here')</div>
<p>hide evalButton:</p><div id="nobtn">print('no button')</div>
<p>hide permalink:</p><div id="noperm">print('no share')</div>
<p>callback:</p><div id="cb">print('callback cell')</div>
<p>languages:</p><div id="lang">import sys; print('python', sys.version_info[0])</div>
<script>
  window.cbCalls = 0;
  window.cells = {{
    loc: sagecell.makeSagecell({{inputLocation: "#loc-in", outputLocation: "#loc-out"}}),
    codeloc: sagecell.makeSagecell({{inputLocation: "#codeloc", codeLocation: "#src"}}),
    ta: sagecell.makeSagecell({{inputLocation: "#ta"}}),
    plain: sagecell.makeSagecell({{inputLocation: "#plain"}}),
    auto: sagecell.makeSagecell({{inputLocation: "#auto", autoeval: true}}),
    noed: sagecell.makeSagecell({{inputLocation: "#noed", hide: ["editor"]}}),
    nobtn: sagecell.makeSagecell({{inputLocation: "#nobtn", hide: ["evalButton"]}}),
    noperm: sagecell.makeSagecell({{inputLocation: "#noperm", hide: ["permalink"]}}),
    cb: sagecell.makeSagecell({{inputLocation: "#cb", callback: function () {{
      window.cbCalls += 1;
      window.cbSawCell = !!document.querySelector("#cb .sagecell .sagecell-evaluate");
    }}}}),
    lang: sagecell.makeSagecell({{inputLocation: "#lang", languages: ["sage", "python", "r"],
                                  defaultLanguage: "python"}}),
  }};
  window.cbAfterMake = window.cbCalls;
</script></body></html>
"""

LINKED = HEAD + """<h1>linkKey</h1>
<div id="a1">x = 'group A'</div><div id="a2">print(x)</div>
<div id="b1">print(x)</div><div id="b2">x = 'group B'; print(x)</div>
<script>
  window.cells = {{
    a1: sagecell.makeSagecell({{inputLocation: "#a1", linkKey: "A"}}),
    a2: sagecell.makeSagecell({{inputLocation: "#a2", linkKey: "A"}}),
    b1: sagecell.makeSagecell({{inputLocation: "#b1", linkKey: "B"}}),
    b2: sagecell.makeSagecell({{inputLocation: "#b2", linkKey: "B"}}),
  }};
</script></body></html>
"""

OUTPUTS = HEAD + """<h1>Outputs</h1><div id="out">print(1)</div><div id="other">print('other cell')</div>
<script>
  window.cells = {{
    out: sagecell.makeSagecell({{inputLocation: "#out"}}),
    other: sagecell.makeSagecell({{inputLocation: "#other"}}),
  }};
</script></body></html>
"""

# A page with MathJax 3 of its own (here the copy our server serves), configured
# nothing: no $ delimiters.
MATHJAX = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Mathjax</title>
<script src="{server}static/build/mathjax/tex-svg.js"></script>
<script src="{server}embedded_sagecell.js"></script></head><body>
<h1>Maths</h1><div id="out">print(1)</div>
<script>window.cells = {{out: sagecell.makeSagecell({{inputLocation: "#out"}})}};</script></body></html>
"""

LATEX = ("from IPython.display import Latex, Math, display\n"
         "display(Latex(r'The value $x^2 + \\frac{1}{2}$ and $$\\int_0^1 t\\,dt$$'))\n"
         "display(Math(r'\\alpha^2'))")


@pytest.fixture(scope="module")
def server(module_children, tmp_path_factory):
    return cell_server_and_site(
        module_children, tmp_path_factory.mktemp("fe-options") / "site", "f3",
        lambda base: {f"{name}.html": text.format(server=base, title=name.title())
                      for name, text in [("options", OPTIONS), ("linked", LINKED), ("outputs", OUTPUTS),
                                                     ("mathjax", MATHJAX)]},
        ["--ready-kernels", "3", "--max-kernels", "12", "--kernels-per-session", "6"])


def run(page, name, code=None):
    """Evaluate cell ``name`` (window.cells[name]), with ``code`` if given."""
    if code is not None:
        page.evaluate("([n, c]) => window.cells[n].setCode(c)", [name, code])
    page.evaluate("n => window.cells[n].evaluate()", name)


def out(page, sel):
    return page.locator(f"{sel} .sagecell-output")


# ---- options ----------------------------------------------------------------------------

def test_output_location_and_code_sources(server, page):
    page.goto(server["embed"] + "options.html")
    # outputLocation: the output area lives in the other element, not under the input
    assert page.locator("#loc-out > .sagecell-output").count() == 1
    assert page.locator("#loc-in .sagecell-output").count() == 0
    page.locator("#loc-in .sagecell-evaluate").click()
    wait_state(page, "#loc-in", "finished")
    assert page.locator("#loc-out .sagecell-output").inner_text().strip() == "went elsewhere"
    # codeLocation: the code is the other element's, not the input's own text
    assert page.evaluate("cells.codeloc.getCode()") == "print('from ' + 'elsewhere')"
    page.locator("#codeloc .sagecell-evaluate").click()
    wait_state(page, "#codeloc", "finished")
    assert out(page, "#codeloc").inner_text().strip() == "from elsewhere"
    # code from a <textarea> inside the input, and from the input's plain text
    assert page.evaluate("cells.ta.getCode()") == "print('from a textarea')"
    assert page.evaluate("cells.plain.getCode()") == "print('plain ' + 'text')"
    page.locator("#ta .sagecell-evaluate").click()
    page.locator("#plain .sagecell-evaluate").click()
    wait_state(page, "#ta", "finished")
    wait_state(page, "#plain", "finished")
    assert out(page, "#ta").inner_text().strip() == "from a textarea"
    assert out(page, "#plain").inner_text().strip() == "plain text"
    assert page.locator("#ta textarea").count() <= 1         # the page's textarea was replaced, not kept


def test_autoeval_runs_on_load(server, page):
    page.goto(server["embed"] + "options.html")
    wait_state(page, "#auto", "finished")                   # nobody clicked anything
    assert out(page, "#auto").inner_text().strip() == "ran on load"
    # the others did not run
    assert out(page, "#plain").inner_text().strip() == ""


def test_hide_editor_eval_button_and_permalink(server, page):
    page.goto(server["embed"] + "options.html")
    page.wait_for_selector("#plain .sagecell-evaluate")
    # hide: ["editor"]: no code box, but it still evaluates its code
    assert page.locator("#noed .sagecell-editor, #noed .sagecell-cm, #noed textarea").count() == 0
    assert page.locator("#noed .sagecell-evaluate").count() == 1
    page.locator("#noed .sagecell-evaluate").click()
    wait_state(page, "#noed", "finished")
    assert out(page, "#noed").inner_text().strip() == "no editor here"
    # hide: ["evalButton"]: the editor stays, no Evaluate button; Shift+Enter / evaluate() still run it
    assert page.locator("#nobtn .sagecell-evaluate").count() == 0
    assert page.locator("#nobtn .sagecell-stop").count() == 1           # only that button is hidden
    assert page.locator("#nobtn .sagecell-status").count() == 1
    assert page.locator("#nobtn .sagecell > :is(textarea.sagecell-editor, .sagecell-cm)").count() == 1
    run(page, "nobtn")
    wait_state(page, "#nobtn", "finished")
    assert out(page, "#nobtn").inner_text().strip() == "no button"
    # hide: ["permalink"]: no Share button, evaluation unaffected
    assert page.locator("#noperm .sagecell-share").count() == 0
    assert page.locator("#plain .sagecell-share").count() == 1
    assert page.locator("#noperm .sagecell-evaluate").count() == 1


def test_callback_is_called_once_when_the_cell_is_ready(server, page):
    page.goto(server["embed"] + "options.html")
    page.wait_for_function("window.cbCalls >= 1", timeout=10_000)
    assert page.evaluate("window.cbSawCell") is True         # the cell was built when it was called
    page.locator("#cb .sagecell-evaluate").click()
    wait_state(page, "#cb", "finished")
    page.locator("#cb .sagecell-evaluate").click()
    wait_state(page, "#cb", "finished")
    assert page.evaluate("window.cbCalls") == 1              # once, not once per evaluation


def test_languages_and_default_language(server, page):
    page.goto(server["embed"] + "options.html")
    sel = page.locator("#lang select.sagecell-language")
    assert sel.is_visible()
    assert sel.locator("option").all_inner_texts() == ["sage", "python", "r"]
    assert sel.input_value() == "python"
    assert page.locator("#plain select.sagecell-language").count() == 0    # one language: no selector
    page.locator("#lang .sagecell-evaluate").click()
    wait_state(page, "#lang", "finished")
    assert out(page, "#lang").inner_text().strip() == "python 3"


def test_link_keys_separate_groups(server, page):
    page.goto(server["embed"] + "linked.html")
    page.locator("#a1 .sagecell-evaluate").click()
    wait_state(page, "#a1", "finished")
    page.locator("#a2 .sagecell-evaluate").click()
    wait_state(page, "#a2", "finished")
    assert out(page, "#a2").inner_text().strip() == "group A"            # same key: shared
    page.locator("#b1 .sagecell-evaluate").click()
    wait_state(page, "#b1", "error")
    assert "NameError" in out(page, "#b1").inner_text()                 # other key: not shared
    page.locator("#b2 .sagecell-evaluate").click()
    wait_state(page, "#b2", "finished")
    page.locator("#a2 .sagecell-evaluate").click()
    wait_state(page, "#a2", "finished")
    assert out(page, "#a2").inner_text().strip() == "group A"            # B's x did not leak into A
    page.locator("#b1 .sagecell-evaluate").click()
    wait_state(page, "#b1", "finished")
    assert out(page, "#b1").inner_text().strip() == "group B"
    ids = page.evaluate("[cells.a1.kernelOf().id, cells.a2.kernelOf().id, cells.b1.kernelOf().id]")
    assert ids[0] == ids[1] != ids[2]


# ---- outputs ----------------------------------------------------------------------------

def test_stdout_and_stderr_interleave_in_order(server, page):
    page.goto(server["embed"] + "outputs.html")
    page.wait_for_selector("#out .sagecell-evaluate")
    run(page, "out", "import sys\nprint('one', flush=True)\nprint('two', file=sys.stderr, flush=True)\n"
                     "print('three', flush=True)")
    wait_state(page, "#out", "finished")
    blocks = page.locator("#out .sagecell-stream")
    assert blocks.count() == 3
    assert [t.strip() for t in blocks.all_inner_texts()] == ["one", "two", "three"]
    classes = [blocks.nth(i).get_attribute("class") for i in range(3)]
    assert "sagecell-stdout" in classes[0] and "sagecell-stderr" in classes[1] and "sagecell-stdout" in classes[2]
    colour = [blocks.nth(i).evaluate("e => getComputedStyle(e).color") for i in range(3)]
    assert colour[0] == colour[2] != colour[1]


def test_ansi_colours_render_as_spans(server, page):
    page.goto(server["embed"] + "outputs.html")
    page.wait_for_selector("#out .sagecell-evaluate")
    run(page, "out", "print('\\x1b[31mred\\x1b[0m plain', flush=True)\n1/0")
    wait_state(page, "#out", "error")
    assert "\x1b" not in out(page, "#out").inner_text()                  # no raw escape character anywhere
    assert page.locator("#out .sagecell-stream").inner_text().strip() == "red plain"   # nor codes as text
    red = page.locator("#out .sagecell-stream span", has_text="red").first
    assert red.evaluate("e => getComputedStyle(e).color") == "rgb(192, 57, 43)"
    assert page.locator("#out .sagecell-stream span", has_text="plain").first.get_attribute("style") is None
    tb = page.locator("#out .sagecell-error")
    assert "ZeroDivisionError" in tb.inner_text()
    assert tb.locator("span[style*='color']").count() > 0               # the traceback is coloured


def test_svg_output_is_shown(server, page):
    page.goto(server["embed"] + "outputs.html")
    page.wait_for_selector("#out .sagecell-evaluate")
    run(page, "out", "from IPython.display import SVG, display\n"
                     "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"120\" height=\"40\">"
                     "<rect width=\"120\" height=\"40\" fill=\"#2361b8\"/></svg>'))")
    wait_state(page, "#out", "finished")
    img = page.locator("#out img.sagecell-image")
    assert img.count() == 1
    assert img.get_attribute("src").startswith("data:image/svg+xml")
    page.wait_for_function("() => document.querySelector('#out img.sagecell-image').naturalWidth === 120")
    assert img.bounding_box()["height"] > 30


def test_clear_output_removes_earlier_output_of_that_request(server, page):
    page.goto(server["embed"] + "outputs.html")
    page.wait_for_selector("#out .sagecell-evaluate")
    page.locator("#other .sagecell-evaluate").click()
    wait_state(page, "#other", "finished")
    run(page, "out", "from IPython.display import clear_output, display, HTML\nprint('before')\n"
                     "display(HTML('<b>html before</b>'))\nclear_output(wait=False)\nprint('after')")
    wait_state(page, "#out", "finished")
    assert out(page, "#out").inner_text().strip() == "after"
    assert page.locator("#out iframe").count() == 0
    assert out(page, "#other").inner_text().strip() == "other cell"     # another cell's output stays


def test_update_display_data_replaces_in_place(server, page):
    page.goto(server["embed"] + "outputs.html")
    page.wait_for_selector("#out .sagecell-evaluate")
    run(page, "out", "from IPython.display import display\nh = display('first', display_id=True)\n"
                     "print('after it', flush=True)\nh.update('second')")
    wait_state(page, "#out", "finished")
    text = out(page, "#out").inner_text()
    assert "first" not in text
    assert text.count("second") == 1
    assert text.index("second") < text.index("after it")                  # replaced where it was


def test_latex_without_mathjax_is_readable_text(server, page):
    """The page has no MathJax and the server's copy cannot be had: the source."""
    page.route("**/static/build/mathjax/**", lambda route: route.abort())
    page.goto(server["embed"] + "outputs.html")
    page.wait_for_selector("#out .sagecell-evaluate")
    assert page.evaluate("typeof window.MathJax") == "undefined"
    run(page, "out", "from IPython.display import Latex, display\ndisplay(Latex(r'$x^2 + \\frac{1}{2}$'))")
    wait_state(page, "#out", "finished")
    page.wait_for_function("() => !document.querySelector('#out .sagecell-output').innerText.includes('\\\\(')")
    text = out(page, "#out").inner_text().strip()
    assert "object>" not in text
    assert text == "$x^2 + \\frac{1}{2}$"
    # later LaTeX output goes straight to the fallback: no second try, no wait
    run(page, "out", "class V:\n    def _repr_latex_(self): return r'$v^2$'\n"
                     "    def __repr__(self): return 'v**2'\nV()")
    wait_state(page, "#out", "finished")
    assert out(page, "#out").inner_text().strip() == "v**2"             # its plain text, as before


def test_latex_on_a_page_without_mathjax_uses_the_servers_copy(server, page):
    served: list[str] = []
    page.on("response", lambda r: served.append(r.url) if "mathjax" in r.url and r.ok else None)
    page.goto(server["embed"] + "outputs.html")
    page.wait_for_selector("#out .sagecell-evaluate")
    assert page.evaluate("typeof window.MathJax") == "undefined"
    run(page, "out", "print('no maths yet')")
    wait_state(page, "#out", "finished")
    assert page.evaluate("typeof window.MathJax") == "undefined"       # loaded only when needed
    run(page, "out", LATEX)
    wait_state(page, "#out", "finished")
    check_typeset(page, "#out")
    assert served == [server["base"] + "static/build/mathjax/" + f for f in ("tex-svg.js", "ui/safe.js")]
    assert page.locator("h1 mjx-container").count() == 0                # the page itself is left alone


def check_typeset(page, sel):
    """LATEX's three formulas typeset by MathJax (SVG), the $$ one as display maths,
    the prose around them kept, no TeX source or $ left in view."""
    page.wait_for_function(f"() => document.querySelectorAll('{sel} .sagecell-output mjx-container').length === 3",
                           timeout=20_000)
    maths = page.locator(f"{sel} .sagecell-output mjx-container")
    assert [maths.nth(i).get_attribute("display") for i in range(3)] == [None, "true", None]
    assert page.locator(f"{sel} .sagecell-output mjx-container svg").count() == 3
    text = page.locator(f"{sel} .sagecell-output").inner_text()
    assert "The value" in text and "and" in text
    assert "\\frac" not in text and "$" not in text and "\\alpha" not in text


def test_latex_is_typeset_by_the_pages_own_mathjax(server, page):
    page.goto(server["embed"] + "mathjax.html")
    page.wait_for_selector("#out .sagecell-evaluate")
    assert page.evaluate("typeof MathJax.typesetPromise") == "function"
    # MathJax 3's defaults: inline maths only between \( and \), no $
    assert page.evaluate("(MathJax.config.tex || {}).inlineMath === undefined")
    run(page, "out", LATEX)
    wait_state(page, "#out", "finished")
    check_typeset(page, "#out")
    shot(page, "latex-mathjax")


def test_the_standalone_page_typesets_latex_with_its_bundled_mathjax(server, page):
    import urllib.parse
    served: list[str] = []
    page.on("response", lambda r: served.append(r.url) if "mathjax" in r.url and r.ok else None)
    page.goto(server["base"] + "?autoeval=true&c=" + urllib.parse.quote(LATEX))
    wait_state(page, "#cell", "finished")
    check_typeset(page, "#cell")
    assert served and all(u.startswith(server["base"]) for u in served)      # from this server, no CDN


def test_screenshot_of_the_options_page(server, page):
    page.goto(server["embed"] + "options.html")
    wait_state(page, "#auto", "finished")
    for sel in ("#loc-in", "#codeloc", "#ta", "#noed", "#lang"):
        page.locator(f"{sel} .sagecell-evaluate").click()
        wait_state(page, sel, "finished")
    shot(page, "options")
    assert (SHOTS / "options.png").stat().st_size > 10_000


# ---- hostile LaTeX -------------------------------------------------------------------------
# The kernel runs anyone's code (a permalink autoevaluates on the standalone page), so its
# LaTeX is hostile: TeX's html package (autoloaded by \href, \style, \class) would put a
# javascript: link, or a box covering the whole page, into the page.  An ordinary link and
# the maths around them must still render.
HOSTILE_LATEX = (
    "from IPython.display import Latex, display\n"
    "display(Latex(r'$\\href{javascript:window.top.pwned=1}{click}$ and "
    "$\\style{position:fixed;top:0;left:0;width:100vw;height:100vh;background:red;z-index:99}{X}$ and "
    "$\\href{https://example.org/}{ok}$ and $x^2$'))")

# Every javascript: link in the document, and every element of the output that is fixed
# or sticky (the cell's own toolbar and the page may be).
HOSTILE_CHECK = """sel => {
  const bad = [];
  const out = document.querySelector(sel + ' .sagecell-output');
  for (const e of document.querySelectorAll('*')) {
    for (const a of e.attributes)
      if (/(^|:)href$/i.test(a.name) && /^\\s*javascript:/i.test(a.value)) bad.push(e.tagName + ' ' + a.value);
    const pos = getComputedStyle(e).position;
    if (out.contains(e) && (pos === 'fixed' || pos === 'sticky')) bad.push(e.tagName + ' position:' + pos);
  }
  const links = [...out.querySelectorAll('a')].map(a => a.getAttribute('href') || a.getAttribute('xlink:href'));
  return {bad, links, maths: out.querySelectorAll('mjx-container svg').length, pwned: window.pwned === 1};
}"""


def check_hostile_latex_is_harmless(page, sel):
    page.wait_for_function(f"() => document.querySelectorAll('{sel} .sagecell-output mjx-container svg').length === 4",
                           timeout=20_000)
    got = page.evaluate(HOSTILE_CHECK, sel)
    assert got["bad"] == [], got
    assert got["maths"] == 4 and "https://example.org/" in got["links"], got     # ordinary maths and links stay
    text = page.locator(f"{sel} .sagecell-output").inner_text()
    assert "\\href" not in text and "\\style" not in text                       # typeset, not source
    page.locator(f"{sel} .sagecell-output mjx-container").first.click()         # \href's text: no link now
    assert page.evaluate("window.pwned") is None


def test_hostile_latex_with_the_servers_mathjax_is_filtered(server, page):
    """The server's copy loads with ui/safe: the javascript: link and the style dropped."""
    served: list[str] = []
    page.on("response", lambda r: served.append(r.url) if "mathjax" in r.url and r.ok else None)
    page.goto(server["embed"] + "outputs.html")
    page.wait_for_selector("#out .sagecell-evaluate")
    run(page, "out", HOSTILE_LATEX)
    wait_state(page, "#out", "finished")
    check_hostile_latex_is_harmless(page, "#out")
    assert server["base"] + "static/build/mathjax/ui/safe.js" in served


def test_hostile_latex_with_the_pages_own_unsafe_mathjax_is_filtered(server, page):
    """The page's MathJax has no ui/safe (its configuration is its own): what it makes
    of the kernel's LaTeX is filtered as it lands."""
    page.goto(server["embed"] + "mathjax.html")
    page.wait_for_selector("#out .sagecell-evaluate")
    run(page, "out", HOSTILE_LATEX)
    wait_state(page, "#out", "finished")
    check_hostile_latex_is_harmless(page, "#out")


def test_hostile_latex_in_a_link_on_the_standalone_page_is_filtered(server, page):
    """The standalone page (our origin) evaluates a shared link's code at once."""
    import urllib.parse
    page.goto(server["base"] + "?autoeval=true&c=" + urllib.parse.quote(HOSTILE_LATEX))
    wait_state(page, "#cell", "finished")
    check_hostile_latex_is_harmless(page, "#cell")
