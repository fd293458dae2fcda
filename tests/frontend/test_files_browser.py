"""Issue 6: links to the files the code wrote, in a real Chromium, on a page of
another origin (the links must point at the cell's server, not the page).

A linked cell's kernel stays alive, so its links work: clicking one opens the
file; an image gets a thumbnail.  A cell with an interact keeps its kernel
too.  A plain cell's kernel ends with its computation, and its files with it:
the names stay, unlinked, with a note saying why.
"""
from __future__ import annotations


import pytest

from tests.frontend.test_cell_browser import CHROMIUM, browser, page, shot_of, wait_state  # noqa: F401
from tests.support.embedding import cell_server_and_site

pytestmark = [pytest.mark.integration, pytest.mark.browser]

LINKED_CODE = r"""import os
open('out.txt', 'w').write('hello from the kernel')
os.makedirs('data', exist_ok=True)
open('data/two words #1.csv', 'w').write('a,b\n1,2\n')
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(3, 2)); ax.plot([1, 3, 2]); fig.savefig('plot.png'); plt.close(fig)
print('wrote 3 files')
"""

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Files</title>
<script src="{server}embedded_sagecell.js"></script></head><body>
<h1>Files the code writes</h1>
<div id="lk"><script type="text/x-sage">{linked}</script></div>
<div id="plain">open('plain.txt', 'w').write('gone soon')</div>
<div id="ia">@interact
def f(n=3):
    open('n.txt', 'w').write(str(n))
    print(n)</div>
<div id="none">1+1</div>
<script>
  window.cells = {{
    lk: sagecell.makeSagecell({{inputLocation: "#lk", linked: true}}),
    plain: sagecell.makeSagecell({{inputLocation: "#plain"}}),
    ia: sagecell.makeSagecell({{inputLocation: "#ia"}}),
    none: sagecell.makeSagecell({{inputLocation: "#none"}}),
  }};
</script></body></html>
"""


@pytest.fixture(scope="module")
def server(module_children, tmp_path_factory):
    s = cell_server_and_site(module_children, tmp_path_factory.mktemp("files") / "site", "ff1",
                             lambda base: {"files.html": PAGE.format(server=base, linked=LINKED_CODE)},
                             ["--ready-kernels", "2", "--max-kernels", "8", "--kernels-per-session", "4",
                              "--files-grace", "4"])
    return dict(s, url=s["embed"] + "files.html")


def test_a_linked_cell_links_the_files_it_wrote_and_they_open(server, page):
    page.goto(server["url"])
    page.locator("#lk .sagecell-evaluate").click()
    wait_state(page, "#lk", "finished", timeout=30_000)
    links = page.locator("#lk .sagecell-files a.sagecell-file")
    assert links.all_inner_texts() == ["data/two words #1.csv", "out.txt", "plot.png"]
    kid = page.evaluate("window.cells.lk.kernelOf().id")
    for a in links.all():
        assert a.get_attribute("target") == "_blank" and a.get_attribute("title") == "File written by the code"
    href = links.nth(0).get_attribute("href")
    assert href.startswith(f"{server['base']}kernel/{kid}/files/data/two%20words%20%231.csv?v=")
    # The thumbnail of the image loaded from the cell's server.
    thumb = page.locator("#lk img.sagecell-file-thumb")
    assert thumb.count() == 1
    page.wait_for_function("document.querySelector('#lk img.sagecell-file-thumb').naturalWidth > 0")
    # Clicking opens the file in a new tab.
    with page.context.expect_page() as popup:
        links.nth(1).click()
    tab = popup.value
    tab.wait_for_load_state()
    assert tab.locator("body").inner_text().strip() == "hello from the kernel"
    tab.close()
    resp = page.request.get(href)
    assert resp.status == 200 and resp.text() == "a,b\n1,2\n"
    assert "Files written" in page.locator("#lk .sagecell-output").inner_text()
    shot_of(page.locator("#lk .sagecell"), "files-linked-cell")


def test_an_interact_keeps_its_kernel_and_links_work(server, page):
    page.goto(server["url"])
    page.locator("#ia .sagecell-evaluate").click()
    wait_state(page, "#ia", "finished", timeout=30_000)
    link = page.locator("#ia a.sagecell-file")
    link.wait_for(timeout=10_000)
    assert link.inner_text() == "n.txt"
    resp = page.request.get(link.get_attribute("href"))
    assert resp.status == 200 and resp.text() == "3"


def test_a_plain_cell_links_its_files_for_the_grace_then_shows_the_names(server, page):
    page.goto(server["url"])
    page.locator("#plain .sagecell-evaluate").click()
    page.locator("#none .sagecell-evaluate").click()
    wait_state(page, "#plain", "finished")
    wait_state(page, "#none", "finished")
    # The kernel stays --files-grace (4 s here) for the files its code wrote: the link works.
    link = page.locator("#plain a.sagecell-file")
    link.wait_for(timeout=10_000)
    resp = page.request.get(link.get_attribute("href"))
    assert resp.status == 200 and resp.text() == "gone soon"
    page.wait_for_selector("#plain .sagecell-files.sagecell-files-gone", timeout=15_000)
    files = page.locator("#plain .sagecell-files")
    assert files.locator("a").count() == 0
    assert files.locator(".sagecell-file").inner_text() == "plain.txt"
    assert "kernel has ended" in files.inner_text()
    assert page.locator("#plain .sagecell[data-state]").get_attribute("data-state") == "finished"
    # 1+1 writes nothing: no list.
    assert page.locator("#none .sagecell-files").count() == 0
    assert page.locator("#none .sagecell-output").inner_text().strip() == "2"
    shot_of(page.locator("#plain .sagecell"), "files-plain-cell")
