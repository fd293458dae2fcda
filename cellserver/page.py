"""The standalone cell page ``/`` (SageMathCell's root page), preloaded.

``?c=<code>``, ``?z=<zipped code>`` or ``?q=<permalink id>`` preload the
cell, with ``lang``, ``interacts`` (JSON, or z-encoded as Share's long link
has it) and ``autoeval`` (default true for ``q`` and ``z``: a shared link
shows its output at once; ``autoeval=false`` does not).  A ``z`` that does not
decode is a 400 page saying so; a ``q`` the permalink service does not know
is a 404 page (looked up server-side when ``permalink_url`` is set; else the
page looks it up itself).  ``text/latex`` output is typeset by MathJax
(static/build/mathjax/, from npm by the install command), which the library
loads when the first one arrives, with MathJax's ui/safe: a shared link runs
anyone's code on this origin, and its LaTeX must not add a ``javascript:`` link
(``\\href``) or restyle the page (``\\style``).  A ``lang`` this server does not run (``LANGUAGES``)
falls back to Python, with a note on the page saying so.  The page is the embedding library
(``embedded_sagecell.js``) used on our own origin.
"""
from __future__ import annotations

import base64
import binascii
import html
import json
import zlib

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import server

from deploy.webutil import MethodsResource

MAX_CODE = 65_000
# The languages this server's kernels run (the cell's language menu).  A link's
# ``lang`` outside them (SageMathCell's ``sage``, say) falls back to the first,
# with a note saying so: the menu never holds a language it cannot select.
LANGUAGES = ("python",)
_log = Logger()


def decode_z(z: str) -> str:
    """``z`` = urlsafe base64 of zlib-compressed UTF-8 code, padding optional."""
    try:
        raw = base64.urlsafe_b64decode(z + "=" * (-len(z) % 4))
        code = zlib.decompressobj().decompress(raw, MAX_CODE * 4 + 1).decode("utf-8")
    except (binascii.Error, ValueError, zlib.error, UnicodeDecodeError) as e:
        raise ValueError(f"the z parameter is not compressed code: {e}") from None
    if len(code) > MAX_CODE:
        raise ValueError("the code in z is too long")
    return code


def encode_z(code: str) -> str:
    return base64.urlsafe_b64encode(zlib.compress(code.encode("utf-8"))).decode("ascii").rstrip("=")


def interacts_arg(value: str | None) -> str | None:
    """The ``interacts`` parameter: JSON text, or (as in the permalink service's
    answer and SageMathCell's long links) that text z-encoded.  None if absent
    or not readable: the cell then starts with its controls' defaults."""
    if not value:
        return None
    text = value
    if not value.lstrip().startswith(("[", "{")):
        try:
            text = decode_z(value)
        except ValueError:
            return None
    try:
        json.loads(text)
    except ValueError:
        return None
    return text


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cellstack: run Python in your browser</title>
<link rel="stylesheet" href="static/cell.css">
<style>
 body {{ font-family: system-ui, sans-serif; margin: 0; background: #f6f8fa; color: #1f2328; }}
 header {{ background: #24292f; color: #fff; padding: 0.8rem 1.5rem; }}
 header h1 {{ margin: 0; font-size: 1.2rem; font-weight: 600; }}
 main {{ max-width: 62rem; margin: 1.5rem auto; padding: 0 1rem; }}
 .notice {{ border-radius: .375rem; padding: .6rem .8rem; margin-bottom: 1rem; }}
 .notice.error {{ background: #ffebe9; border: 1px solid #ff8182; }}
 .notice.info {{ background: #ddf4ff; border: 1px solid #54aeff; }}
 footer {{ max-width: 62rem; margin: 0 auto 2rem; padding: 0 1rem; font-size: .85rem; color: #57606a; }}
</style>
<script src="static/embedded_sagecell.js"></script>
</head><body>
<header><h1>cellstack</h1></header>
<main>
{notice}
<div id="cell"></div>
</main>
<footer>Type Python and press Evaluate (or Shift+Enter). Share makes a link to this cell.</footer>
<script>
 var preload = {preload};
 function start(code, interacts) {{
   sagecell.makeSagecell({{ inputLocation: "#cell", code: code, autoeval: preload.autoeval,
     interacts: interacts || preload.interacts, languages: preload.languages, defaultLanguage: preload.lang }});
 }}
 if (preload.q && preload.code === null) {{
   fetch("permalink?q=" + encodeURIComponent(preload.q)).then(function (r) {{
     if (!r.ok) throw new Error(r.status === 404 ? "no cell is stored under this link" : "the link service answered " + r.status);
     return r.json();
   }}).then(function (c) {{ start(c[0], c[2]); }}).catch(function (e) {{
     document.querySelector("main").insertAdjacentHTML("afterbegin", '<div class="notice error" role="alert"></div>');
     document.querySelector(".notice").textContent = "This link does not work: " + e.message;
     preload.autoeval = false;
     start("");
   }});
 }} else {{ start(preload.code || ""); }}
</script>
</body></html>
"""


def language(asked: str | None) -> tuple[str, str]:
    """The cell's language for a link's ``lang``, and a note when it is not one
    this server runs ("" when it is, or none was asked for)."""
    if not asked or asked in LANGUAGES:
        return asked or LANGUAGES[0], ""
    return LANGUAGES[0], (f"This link asks for the language \u201c{asked}\u201d, which this server does not run: "
                          f"the code is shown as {LANGUAGES[0].capitalize()}, and may need changes to run.")


def render(preload: dict, notice: str = "", note: str = "") -> bytes:
    """The page; ``notice`` is an error (a broken link: nothing is evaluated),
    ``note`` something the reader should know about a link that still works."""
    if notice:
        preload = preload | {"autoeval": False}     # nothing worth running on a broken link
    lang, lang_note = language(preload.get("lang"))
    preload = preload | {"lang": lang, "languages": list(LANGUAGES)}
    note = note or lang_note
    blob = json.dumps(preload).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    box = f'<div class="notice error" role="alert">{html.escape(notice)}</div>' if notice else ""
    if note:
        box += f'<div class="notice info" role="status">{html.escape(note)}</div>'
    return PAGE.format(preload=blob, notice=box).encode("utf-8")


class PageResource(MethodsResource):
    isLeaf = True

    def __init__(self, static_dir: str, permalink_url: str | None = None, agent=None):
        super().__init__()
        self.static_dir = static_dir
        self.permalink_url = permalink_url.rstrip("/") + "/" if permalink_url else None
        self.agent = agent

    def render_GET(self, request):
        if request.postpath not in ([b""], []):
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"application/json")
            return b'{"error":"not_found","message":"no such path"}'
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Content-Security-Policy", b"frame-ancestors *")

        def arg(name):
            v = request.args.get(name.encode())
            return v[-1].decode("utf-8", "replace") if v else None

        preload = {"code": None, "lang": arg("lang"), "interacts": interacts_arg(arg("interacts")),
                   "autoeval": (arg("autoeval") or "").lower() in ("1", "true", "yes"), "q": arg("q")}
        if arg("autoeval") is None and (arg("q") or arg("z")):
            preload["autoeval"] = True       # a shared link (Share's ?q= / ?z=) shows its output at once
        if arg("z") is not None:
            try:
                preload["code"] = decode_z(arg("z"))
            except ValueError as e:
                request.setResponseCode(400)
                return render(preload | {"code": ""}, f"This link is damaged: {e}.")
        elif arg("c") is not None:
            preload["code"] = arg("c")[:MAX_CODE]
        elif preload["q"] and self.permalink_url:
            defer.Deferred.fromCoroutine(self._lookup(request, preload))
            return server.NOT_DONE_YET
        return render(preload)

    async def _lookup(self, request, preload):
        import treq
        from urllib.parse import quote

        status, notice = 200, ""
        try:
            resp = await treq.get(self.permalink_url + "permalink?q=" + quote(preload["q"]), timeout=5)
            body = await resp.content()
            if resp.code == 200:
                found = json.loads(body)
                preload["code"] = found[0]
                if len(found) > 2 and found[2]:
                    preload["interacts"] = found[2]
            elif resp.code in (400, 404):
                status, notice, preload["code"] = 404, "No cell is stored under this link.", ""
        except Exception:  # the page can still try itself
            _log.failure("permalink lookup failed")
        request.setResponseCode(status)
        request.write(render(preload, notice))
        request.finish()


def make_page_resource(static_dir: str, permalink_url: str | None = None):
    return PageResource(static_dir, permalink_url)
