"""A real cell server and, on another origin (127.0.0.2), a static site of
embedding pages: what the browser tests load, as a course page would."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import pytest

from tests.support.browser import CHROMIUM
from tests.support.ports import free_port
from tests.support.procs import http_ok, kernel_runtime_dir, wait_until


def cell_server_and_site(children, site_dir: Path, node: str, pages: Callable[[str], dict[str, str]],
                         args: list[str]) -> dict:
    """Start ``twistd cellserver --node <node> <args>`` and a site serving
    ``pages(base)`` (file name -> HTML, given the cell server's base URL).
    Returns the server's ``base`` URL, the site's ``embed`` URL (ending in /)
    and the cell server's ``child``."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (deploy/install installs it)")
    port = free_port()
    cs = children.twistd("cellserver", "cellserver", [
        "--node", node, "--listen", f"tcp:{port}:interface=127.0.0.1", "--runtime-dir", kernel_runtime_dir(node),
        *args])
    base = f"http://127.0.0.1:{port}/"
    wait_until(lambda: http_ok(base + "healthz"), 60, "cell server", child=cs)
    site_dir.mkdir(parents=True, exist_ok=True)
    files = pages(base)
    for name, html in files.items():
        (site_dir / name).write_text(html)
    site_port = free_port()
    children.start("embedding-site", [sys.executable, "-m", "http.server", str(site_port),
                                      "--bind", "127.0.0.2", "--directory", str(site_dir)])
    embed = f"http://127.0.0.2:{site_port}/"
    wait_until(lambda: http_ok(embed + next(iter(files))), 20, "the embedding page's server")
    return {"base": base, "embed": embed, "child": cs}
