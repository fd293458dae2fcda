"""Debian's Chromium for the browser tests, driven by Playwright.

The flags are what runs here as root with no network: no sandbox (root), no
GPU, and none of Chromium's own background connections (refused by this
machine's closed network, many at a time)."""
from __future__ import annotations

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies or storage from the test before) and its page."""
    ctx = browser.new_context(viewport={"width": 1000, "height": 900})
    pg = ctx.new_page()
    yield pg
    ctx.close()
