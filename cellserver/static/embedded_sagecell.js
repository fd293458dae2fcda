/* cellstack: the embeddable compute cell, compatible with SageMathCell's
 * embedded_sagecell.js.  A page loads this script and calls
 *
 *     sagecell.makeSagecell({inputLocation: "#mycell", evalButtonText: "Evaluate"});
 *
 * The server is <link property="sagecell-root" href="..."> if the page's <head> has
 * one, else where the script came from.  Each evaluation's output goes only into the
 * area of the request that made it (routed by parent_header.msg_id); output of
 * abandoned requests is dropped.  HTML and JavaScript output run in sandboxed
 * iframes, so the page's styles and the output's cannot clash.  text/latex is
 * typeset by the page's MathJax, else by the server's copy (static/build/mathjax),
 * loaded when first needed, with MathJax's ui/safe.  The kernel's LaTeX is anyone's:
 * the page's own MathJax runs it with the page's configuration (its macros, the TeX
 * extensions it allows), so what that makes is filtered again (no javascript: links,
 * nothing fixed) and kept inside its box; a \class may still name one of the page's
 * classes there.  A page that wants more should configure its MathJax with ui/safe.  Widgets (ipywidgets, @interact) are drawn by the
 * widget bundle (static/build/widgets.js), loaded the first time one appears.
 * The code editor (option editor: "codemirror" (default), "codemirror-readonly",
 * "textarea", "textarea-readonly") starts as a textarea; CodeMirror
 * (static/build/editor.js) is loaded and swapped in with the same content and
 * cursor, and if it cannot load the textarea stays.  Shift+Enter evaluates, Tab
 * completes (complete_request), Shift+Tab shows help (inspect_request).
 */
(function () {
  "use strict";
  if (window.sagecell && window.sagecell._cellstack) return;

  // The server: <link property="sagecell-root" href="..."> when the page's head has one (it
  // wins over where the script came from); else the script's own directory, its
  // parent for the script under /static/ (SageMathCell's documented URL).
  var script = document.currentScript;
  var ROOT_LINK = 'link[property="sagecell-root"]';
  function rootFrom(link) {
    var r = link ? link.href : !script ? location.origin + "/" :
      /\/static\/embedded_sagecell\.js([?#]|$)/.test(script.src) ? new URL("../", script.src).href :
      new URL(".", script.src).href;
    return /\/$/.test(r) ? r : r + "/";
  }
  // Only a link in <head> names the server: the body is the page's content (a forum
  // post, a wiki's user markup), and a link there must not choose where this script
  // loads widgets.js, editor.js and MathJax from.
  function rootLink() { return document.head ? document.head.querySelector(ROOT_LINK) : null; }
  var ROOT = rootFrom(rootLink());

  // As SageMathCell's make(): cells are made once the document is parsed, so a page may
  // call makeSagecell from its <head>.
  function domReady(f) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", f, { once: true });
    else f();
  }
  // a link later in <head> than this script counts too (first in the DOMContentLoaded queue)
  domReady(function () {
    var link = rootLink();
    if (link) { ROOT = rootFrom(link); if (window.sagecell) window.sagecell.root = ROOT; }
  });

  var TOS_COOKIE = "cellstack_tos_accepted";
  var WIDGET_MIME = "application/vnd.jupyter.widget-view+json";
  var FILES_MIME = "application/x-cellstack-files";
  var cells = [];
  var linked = {};          // linkKey -> shared Kernel
  var tosText = null;       // null: not fetched; "": no terms
  var widgetsLoading = null;
  var editorLoading = null;

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "class") e.className = attrs[k];
      else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), attrs[k]);
      else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID().replace(/-/g, "");
    var s = ""; for (var i = 0; i < 32; i++) s += Math.floor(Math.random() * 16).toString(16); return s;
  }

  function loadCss(href) {
    if (document.querySelector('link[data-cellstack="' + href + '"]')) return;
    var l = el("link", { rel: "stylesheet", href: href, "data-cellstack": href });
    document.head.appendChild(l);
  }

  // A script that neither loads nor fails within ms (a stalled server) counts as failed:
  // what waits for it (a cell's held messages) must not wait forever.
  var SCRIPT_TIMEOUT = 30000;
  function loadScript(src, ms) {
    return new Promise(function (resolve, reject) {
      var s = el("script", { src: src });
      var timer = setTimeout(function () { reject(new Error("could not load " + src + " (timed out)")); },
                             ms || SCRIPT_TIMEOUT);
      s.onload = function () { clearTimeout(timer); resolve(); };
      s.onerror = function () { clearTimeout(timer); reject(new Error("could not load " + src)); };
      document.head.appendChild(s);
    });
  }

  // Promise<window[name]>: the bundle at path, loaded once; rejected if it fails to
  // load or loads without defining its global.
  function loadBundle(name, path) {
    if (window[name]) return Promise.resolve(window[name]);
    return loadScript(ROOT + path).then(function () {
      if (!window[name]) throw new Error(path + " did not define " + name);
      return window[name];
    });
  }
  function loadWidgets() {
    if (!widgetsLoading) widgetsLoading = loadBundle("cellstackWidgets", "static/build/widgets.js");
    return widgetsLoading;
  }
  function loadEditor() {
    if (!editorLoading) editorLoading = loadBundle("cellstackEditor", "static/build/editor.js");
    return editorLoading;
  }

  // The kernel counts cursor positions in code points, JavaScript strings in UTF-16 units.
  function toCodePoints(s, i) {
    var n = 0;
    for (var j = 0; j < i && j < s.length; j++) {
      var c = s.charCodeAt(j);
      if (c < 0xd800 || c > 0xdbff || j + 1 >= i) n++;
    }
    return n;
  }
  function fromCodePoints(s, cp) {
    var i = 0;
    for (var n = 0; n < cp && i < s.length; n++) {
      var c = s.charCodeAt(i);
      i += c >= 0xd800 && c <= 0xdbff && i + 1 < s.length ? 2 : 1;
    }
    return i;
  }
  function stripAnsi(text) { return String(text).replace(/\x1b\[[0-9;]*[A-Za-z]/g, ""); }

  function hasCookie(name) {
    return document.cookie.split(";").some(function (c) { return c.trim().indexOf(name + "=") === 0; });
  }

  // ---- ANSI colours (tracebacks, coloured prints) --------------------------------
  var ANSI = { 30: "#000", 31: "#c0392b", 32: "#27864a", 33: "#a5730c", 34: "#2361b8", 35: "#8e44ad",
               36: "#138496", 37: "#777", 90: "#777", 91: "#e74c3c", 92: "#2ecc71", 93: "#d4a017",
               94: "#3b82f6", 95: "#b05cc8", 96: "#17a2b8", 97: "#ccc" };
  function ansiToNodes(text, parent) {
    var re = /\x1b\[([0-9;]*)m/g, last = 0, style = {}, m;
    function emit(s) {
      if (!s) return;
      var span = el("span", { text: s });
      if (style.color) span.style.color = style.color;
      if (style.bold) span.style.fontWeight = "bold";
      if (style.bg) span.style.background = style.bg;
      parent.appendChild(span);
    }
    while ((m = re.exec(text))) {
      emit(text.slice(last, m.index));
      last = re.lastIndex;
      (m[1] || "0").split(";").forEach(function (c) {
        c = parseInt(c || "0", 10);
        if (c === 0) style = {};
        else if (c === 1) style.bold = true;
        else if (c === 39) delete style.color;
        else if (c === 49) delete style.bg;
        else if (ANSI[c]) style.color = ANSI[c];
        else if (c >= 40 && c <= 47) style.bg = ANSI[c - 10];
      });
    }
    emit(text.slice(last));
  }

  // ---- a kernel: POST /kernel + websocket ---------------------------------------
  function Kernel(opts) {
    this.timeout = opts.timeout || 0;
    this.handlers = {};        // msg_id -> function(msg)
    this.ws = null;
    this.dead = null;
    this.session = uuid();
    this.onDead = [];
    this.widgets = null;
  }
  Kernel.prototype.start = function () {
    var self = this;
    if (this.starting) return this.starting;
    var body = new URLSearchParams({ timeout: String(this.timeout), CellSessionID: this.session });
    if (hasCookie(TOS_COOKIE)) body.set("accepted_tos", "true");
    this.starting = fetch(ROOT + "kernel", { method: "POST", body: body, credentials: "include" })
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (info) {
          if (!resp.ok) {
            var err = new Error(info.message || ("HTTP " + resp.status));
            err.status = resp.status;
            err.code = info.error;
            err.retryAfter = parseInt(resp.headers.get("Retry-After") || "0", 10);
            throw err;
          }
          return info;
        });
      })
      .then(function (info) {
        self.id = info.id;
        var base = (info.ws_url || ROOT.replace(/^http/, "ws")).replace(/\/?$/, "/");
        return new Promise(function (resolve, reject) {
          var ws = new WebSocket(base + "kernel/" + info.id + "/channels");
          self.ws = ws;
          ws.onopen = function () { resolve(self); };
          ws.onerror = function () { reject(new Error("could not connect to the kernel")); };
          ws.onmessage = function (ev) { self.receive(JSON.parse(ev.data)); };
          ws.onclose = function (ev) { self.ended(ev.reason || ("connection closed (" + ev.code + ")"), ev.code); };
        });
      })
      .catch(function (err) {
        if (!self.ws) self.starting = null;        // refused (429, 503, 403...): the next start asks again
        throw err;
      });
    return this.starting;
  };
  Kernel.prototype.receive = function (msg) {
    var c = msg.content || {};
    var t = msg.msg_type || (msg.header || {}).msg_type;
    if (t === "status" && c.execution_state === "dead") { this.ended(c.reason || "kernel died"); return; }
    if (this.widgets && this.widgets.handleMessage(msg)) return;
    // (issue 7) one manager per kernel: later comm_opens join the queue below
    if (t === "comm_open" && !this.widgets && !this.pendingWidgets) {
      var self = this, queued = [msg];
      this.pendingWidgets = queued;
      loadWidgets().then(function (W) {
        self.widgets = W.createManager({ send: function (m) { self.ws.send(JSON.stringify(m)); }, session: self.session });
        self.pendingWidgets = null;
      }).then(function () {
        self.replay(queued, false);                           // output may belong to an Output widget
        self.widgetsSettled(true);
      }, function (err) {                                     // no widgets: the rest goes on
        if (window.console) console.warn("cellstack: widgets unavailable: " + (err && err.message || err));
        self.widgets = null;
        self.pendingWidgets = null;
        self.widgetsFailed = true;
        self.replay(queued, true);
        self.widgetsSettled(false);
      });
      return;
    }
    // Every message waits while the widget bundle loads (bounded: loadScript's timeout),
    // but for the kernel's death, handled above at once.
    if (this.pendingWidgets) { this.pendingWidgets.push(msg); return; }
    var parent = (msg.parent_header || {}).msg_id;
    var h = parent && this.handlers[parent];
    if (h) h(msg);
  };
  // The messages held while the widget bundle loaded, handled in order; one that throws
  // (a handler's bug) is logged and the rest still go on.  Without widgets the comm
  // messages are dropped.
  Kernel.prototype.replay = function (queued, noWidgets) {
    var self = this;
    queued.forEach(function (m) {
      if (noWidgets && /^comm_/.test(m.msg_type || (m.header || {}).msg_type)) return;
      try { self.receive(m); } catch (e) { if (window.console) console.error("cellstack:", e); }
    });
  };
  // f once the widget manager is there; orElse (if given) if it never will be.
  Kernel.prototype.whenWidgets = function (f, orElse) {
    if (this.widgets) f();
    else if (this.widgetsFailed) { if (orElse) orElse(); }
    else (this.widgetWaiters = this.widgetWaiters || []).push([f, orElse]);
  };
  Kernel.prototype.widgetsSettled = function (ok) {
    var waiters = this.widgetWaiters || [];
    this.widgetWaiters = [];
    waiters.forEach(function (w) {
      var f = ok ? w[0] : w[1];
      try { if (f) f(); } catch (e) { if (window.console) console.error("cellstack:", e); }
    });
  };
  Kernel.prototype.ended = function (reason, code) {
    if (this.dead) return;
    this.dead = { reason: reason, code: code };
    if (this.widgets) this.widgets.disconnect(reason);
    this.onDead.forEach(function (f) { f(reason, code); });
  };
  Kernel.prototype.send = function (msgType, content, onReply, channel) {
    var id = uuid();
    if (onReply) this.handlers[id] = onReply;
    this.ws.send(JSON.stringify({
      channel: channel || "shell",
      header: { msg_id: id, msg_type: msgType, session: this.session, username: "cell", version: "5.3",
                date: new Date().toISOString() },
      parent_header: {}, metadata: {}, content: content
    }));
    return id;
  };
  // One shell request answered by one reply: Promise<reply content | null> (null: no
  // reply within ms, or the kernel ended).
  Kernel.prototype.request = function (msgType, content, replyType, ms) {
    var self = this;
    return new Promise(function (resolve) {
      if (!self.ws || self.ws.readyState !== 1 || self.dead) { resolve(null); return; }
      var id, timer = setTimeout(function () { delete self.handlers[id]; resolve(null); }, ms || 10000);
      id = self.send(msgType, content, function (msg) {
        if ((msg.msg_type || msg.header.msg_type) !== replyType) return;
        clearTimeout(timer);
        delete self.handlers[id];
        resolve(msg.content || {});
      });
    });
  };
  Kernel.prototype.close = function () {
    this.closedByUs = true;
    if (this.ws && this.ws.readyState <= 1) this.ws.close(1000);
    if (this.id) fetch(ROOT + "kernel/" + this.id, { method: "DELETE", credentials: "include" }).catch(function () {});
  };

  // ---- output of one request ---------------------------------------------------------
  function Output(area, kernel) {
    this.area = area;
    this.kernel = kernel;
    this.stream = null;
    this.waitClear = false;
    this.displays = {};
  }
  Output.prototype.clearIfWaiting = function () {
    if (this.waitClear) { this.area.textContent = ""; this.stream = null; this.waitClear = false; }
  };
  Output.prototype.handle = function (msg) {
    var t = msg.msg_type || msg.header.msg_type, c = msg.content;
    if (t === "stream") {
      this.clearIfWaiting();
      if (!this.stream || this.stream.name !== c.name) {
        this.stream = { name: c.name, node: el("pre", { class: "sagecell-stream sagecell-" + c.name }) };
        this.area.appendChild(this.stream.node);
      }
      ansiToNodes(c.text, this.stream.node);
    } else if (t === "execute_result" || t === "display_data") {
      this.clearIfWaiting();
      this.stream = null;
      var node = this.render(c.data || {}, c.metadata || {});
      var did = c.transient && c.transient.display_id;
      if (did) this.displays[did] = node;
      this.area.appendChild(node);
    } else if (t === "update_display_data") {
      var old = this.displays[c.transient && c.transient.display_id];
      if (old) { var fresh = this.render(c.data || {}, c.metadata || {}); old.replaceWith(fresh);
                 this.displays[c.transient.display_id] = fresh; }
    } else if (t === "error") {
      this.clearIfWaiting();
      this.stream = null;
      var pre = el("pre", { class: "sagecell-error" });
      ansiToNodes((c.traceback || [c.ename + ": " + c.evalue]).join("\n"), pre);
      this.area.appendChild(pre);
    } else if (t === "clear_output") {
      if (c.wait) this.waitClear = true; else { this.area.textContent = ""; this.stream = null; }
    }
  };
  Output.prototype.render = function (data, metadata) {
    var box = el("div", { class: "sagecell-display" });
    var kernel = this.kernel;
    if (data[FILES_MIME] && Array.isArray(data[FILES_MIME].files)) {
      box.appendChild(fileList(kernel, data[FILES_MIME]));
    } else if (data[WIDGET_MIME]) {
      box.textContent = "";
      kernel.whenWidgets(function () { kernel.widgets.renderOutput(data, box); }, function () {
        // no widget bundle: the widget's plain text, or a note
        box.appendChild(el("pre", { class: "sagecell-result sagecell-widget-missing",
          text: data["text/plain"] !== undefined ? stripAnsi(data["text/plain"]) : "(a widget: the widget library could not be loaded)" }));
      });
    } else if (data["text/html"] !== undefined) {
      box.appendChild(frame(data["text/html"], "html"));
    } else if (data["image/svg+xml"] !== undefined) {
      box.appendChild(el("img", { alt: "SVG output", class: "sagecell-image",
        src: "data:image/svg+xml;charset=utf-8," + encodeURIComponent(data["image/svg+xml"]) }));
    } else if (data["image/png"] !== undefined) {
      box.appendChild(el("img", { alt: "image output", class: "sagecell-image", src: "data:image/png;base64," + data["image/png"] }));
    } else if (data["image/jpeg"] !== undefined) {
      box.appendChild(el("img", { alt: "image output", class: "sagecell-image", src: "data:image/jpeg;base64," + data["image/jpeg"] }));
    } else if (data["application/javascript"] !== undefined) {
      box.appendChild(frame("<script>" + data["application/javascript"].replace(/<\/script/gi, "<\\/script") + "<\/script>", "js"));
    } else if (data["text/latex"] !== undefined && !mathJaxFailed) {
      ensureMathJax();
      var math = el("div", { class: "sagecell-latex", text: data["text/latex"] });
      // a containing block for fixed and absolute descendants, clipping them (guardMath)
      math.style.contain = "layout";
      math.style.overflowX = "auto";
      math.style.overflowY = "hidden";
      box.appendChild(math);
      typeset(math, data["text/latex"]);
    } else if (data["text/latex"] !== undefined &&
               (data["text/plain"] === undefined || /^<[\w.]+ object( at 0x[0-9a-f]+)?>$/.test(data["text/plain"]))) {
      // no MathJax, and the plain text is only a repr like <IPython.core.display.Latex object>: the source
      box.appendChild(el("pre", { class: "sagecell-result sagecell-latex", text: data["text/latex"] }));
    } else if (data["text/plain"] !== undefined) {
      var pre = el("pre", { class: "sagecell-result" });
      ansiToNodes(data["text/plain"], pre);
      box.appendChild(pre);
    }
    return box;
  };

  // ---- LaTeX: typeset by the page's MathJax, else the server's ------------------------
  // $...$ and $$...$$ as \(...\) and \[...\]: MathJax 3 looks for no $ unless the page
  // configured it; these delimiters it finds under any configuration (MathJax 2's too).
  function texDelimiters(tex) {
    return String(tex).replace(/\\\$|\$\$([\s\S]+?)\$\$|\$((?:\\.|[^$\\])+?)\$/g, function (m, display, inline) {
      return display !== undefined ? "\\[" + display + "\\]" : inline !== undefined ? "\\(" + inline + "\\)" : m;
    });
  }
  // A page without MathJax gets the server's copy (static/build/mathjax), as SageMathCell
  // loads one itself; configured to typeset only what the cell hands it, never the page.
  // The LaTeX comes from the kernel, which runs anyone's code (a permalink autoevaluates
  // on the standalone page): ui/safe filters what \href, \style, \class, \cssId and
  // \data (TeX's html package, autoloaded) would put in the page.  Links only to http,
  // https and mailto; only MathJax's own classes and ids; its harmless styles, no
  // position or size.
  var MATHJAX_SAFE = {
    allow: { URLs: "safe", classes: "safe", cssIDs: "safe", styles: "safe" },
    safeProtocols: { http: true, https: true, mailto: true, file: false, javascript: false, data: false }
  };
  var mathJaxFailed = false;
  function ensureMathJax() {
    if (window.MathJax) return;
    window.MathJax = { loader: { load: ["ui/safe"] }, startup: { typeset: false },
                       options: { safeOptions: MATHJAX_SAFE } };
    loadScript(ROOT + "static/build/mathjax/tex-svg.js").catch(function (err) {
      mathJaxFailed = true;
      if (window.console) console.warn("cellstack: " + err.message + "; LaTeX stays source text");
    });
  }
  // Promise<MathJax | null>: the page's MathJax once it is ready.  A page may set
  // window.MathJax (its configuration) before the script has loaded: waited for, up to ms.
  function mathJaxReady(ms) {
    return new Promise(function (resolve) {
      var waited = 0;
      (function look() {
        var M = window.MathJax;
        if (M && typeof M.typesetPromise === "function") {
          (M.startup && M.startup.promise || Promise.resolve()).then(function () { resolve(M); }, function () { resolve(M); });
        } else if (M && M.Hub && M.Hub.Queue) resolve(M);                 // MathJax 2
        else if (!M || mathJaxFailed || waited >= ms) resolve(null);
        else { waited += 100; setTimeout(look, 100); }
      })();
    });
  }
  // What any MathJax (the page's own, configured as the page likes, perhaps with the
  // html package and no ui/safe) made of the kernel's LaTeX is filtered once more, as it
  // lands (a MutationObserver runs before the page is next drawn): links only to
  // http(s) and mailto, no position:fixed or sticky.  The box itself is a containing
  // block that clips (its CSS, set in render): a position:absolute or a \class naming a
  // page's class cannot cover the page outside it.
  var SAFE_URL = /^\s*(https?:|mailto:|#)/i;
  function defuse(root) {
    Array.prototype.forEach.call(root.querySelectorAll("*"), function (e) {
      for (var i = e.attributes.length - 1; i >= 0; i--) {
        var a = e.attributes[i], name = a.name.toLowerCase();
        if ((name === "href" || /:href$/.test(name) || name === "src" || name === "action" ||
             name === "formaction") && !SAFE_URL.test(a.value)) e.removeAttribute(a.name);
        else if (/^on/.test(name)) e.removeAttribute(a.name);
      }
      if (e.style && /^(fixed|sticky)$/i.test(e.style.position)) e.style.removeProperty("position");
    });
  }
  function guardMath(node) {
    new MutationObserver(function () { defuse(node); })
      .observe(node, { childList: true, subtree: true, attributes: true });
  }
  // The source shows until MathJax has typeset it (and stays, readable, if it never does).
  function typeset(node, tex) {
    mathJaxReady(15000).then(function (M) {
      if (!M || !node.isConnected) return;
      guardMath(node);
      node.textContent = texDelimiters(tex);
      if (M.Hub) { M.Hub.Queue(["Typeset", M.Hub, node]); return; }
      // MathJax 3 wants one typeset at a time: chained on its startup promise
      var run = function () { return M.typesetPromise([node]); };
      var done = M.startup && M.startup.promise ? M.startup.promise.then(run) : run();
      if (M.startup) M.startup.promise = done.catch(function () {});
      done.catch(function () { node.textContent = tex; });
    });
  }

  // (issue 6) The files an execution created or changed (the kernel's filewatch hook):
  // links to GET <root>kernel/<id>/files/<path>, on the cell's server (the page may be
  // another origin).  They live as long as the kernel: once it ends (a plain cell's
  // ends with its computation) the names stay, unlinked.
  var IMAGE_FILE = /\.(png|jpe?g|gif|svg|webp)$/i;
  function fileUrl(kernelId, path) {
    return ROOT + "kernel/" + encodeURIComponent(kernelId) + "/files/" +
      String(path).split("/").map(encodeURIComponent).join("/");
  }
  function fileList(kernel, info) {
    var stamp = "?v=" + Date.now().toString(36);       // a file rewritten later is fetched afresh
    var list = el("ul", { class: "sagecell-files-list" });
    info.files.slice(0, 200).forEach(function (path) {
      if (typeof path !== "string" || !path) return;
      var href = fileUrl(kernel.id, path) + stamp;
      var item = el("li", { class: "sagecell-file-item" }, [
        el("a", { href: href, target: "_blank", rel: "noopener", class: "sagecell-file",
                  title: "File written by the code", text: path })]);
      if (IMAGE_FILE.test(path)) {
        var img = el("img", { src: href, alt: "", loading: "lazy", class: "sagecell-file-thumb" });
        img.onerror = function () { img.remove(); };
        item.insertBefore(el("a", { href: href, target: "_blank", rel: "noopener", tabindex: "-1",
                                    "aria-hidden": "true", class: "sagecell-file-thumblink" }, [img]), item.firstChild);
      }
      list.appendChild(item);
    });
    if (info.more > 0) list.appendChild(el("li", { class: "sagecell-files-more", text: "and " + info.more + " more" }));
    var box = el("div", { class: "sagecell-files", role: "group", "aria-label": "Files written by the code" },
                 [el("div", { class: "sagecell-files-head", text: "Files written" }), list]);
    if (kernel.dead) filesGone(box);
    else {
      kernel.fileBoxes = (kernel.fileBoxes || []).filter(function (b) { return b.isConnected; });
      kernel.fileBoxes.push(box);
      if (!kernel.fileBoxesHooked) {
        kernel.fileBoxesHooked = true;
        kernel.onDead.push(function () { kernel.fileBoxes.forEach(filesGone); kernel.fileBoxes = []; });
      }
    }
    return box;
  }
  function filesGone(box) {
    if (box.classList.contains("sagecell-files-gone")) return;
    box.classList.add("sagecell-files-gone");
    Array.prototype.forEach.call(box.querySelectorAll("a"), function (a) {
      var span = el("span", { class: a.className, title: "The kernel has ended: this file is gone" });
      while (a.firstChild) span.appendChild(a.firstChild);
      a.replaceWith(span);
    });
    box.appendChild(el("div", { class: "sagecell-files-note",
      text: "The kernel has ended, and its files with it (a plain cell's kernel ends shortly after its computation; " +
            "linked cells and interacts keep theirs)." }));
  }

  // HTML/JS output in a sandboxed iframe (scripts allowed, same origin not): it
  // cannot touch the page, its cookies or its styles; it reports its height.
  function frame(html, kind) {
    var id = uuid();
    var doc = "<!doctype html><meta charset=utf-8><style>body{margin:0;font-family:sans-serif;display:flow-root}</style><body>" + html +
      "<script>(function(){function h(){parent.postMessage({cellstackFrame:'" + id + "',height:Math.ceil(document.body.getBoundingClientRect().height)+4},'*')}" +
      "addEventListener('load',h);new ResizeObserver(h).observe(document.body);h()})()<\/script>";
    var f = el("iframe", { class: "sagecell-frame sagecell-frame-" + kind, sandbox: "allow-scripts",
                           title: "output", "data-frame": id });
    f.srcdoc = doc;
    return f;
  }
  window.addEventListener("message", function (ev) {
    var d = ev.data;
    if (!d || !d.cellstackFrame) return;
    var f = document.querySelector('iframe[data-frame="' + d.cellstackFrame + '"]');
    if (f && ev.source === f.contentWindow) f.style.height = Math.min(Math.max(d.height, 20), 2000) + "px";
  });

  // ---- terms of service --------------------------------------------------------------
  function ensureTerms(cell) {
    if (hasCookie(TOS_COOKIE)) return Promise.resolve(true);
    var got = tosText !== null ? Promise.resolve(tosText) :
      fetch(ROOT + "tos.html", { credentials: "include" }).then(function (r) {
        return r.status === 200 ? r.text() : "";
      }).catch(function () { return ""; }).then(function (t) { tosText = t; return t; });
    return got.then(function (text) {
      if (!text) return true;
      return new Promise(function (resolve) {
        var terms = el("div", { class: "sagecell-terms-text" });
        terms.appendChild(frame(text, "terms"));
        var box = el("div", { class: "sagecell-terms", role: "dialog", "aria-label": "Terms of service" }, [
          el("p", { text: "Please accept the terms of service to run code on this server." }), terms,
          el("div", { class: "sagecell-terms-buttons" }, [
            el("button", { type: "button", class: "sagecell-accept", text: "Accept", onclick: function () {
              document.cookie = TOS_COOKIE + "=1; path=/; max-age=31536000; SameSite=Lax";
              box.remove(); resolve(true);
            } }),
            el("button", { type: "button", class: "sagecell-decline", text: "Decline", onclick: function () {
              box.remove(); resolve(false);
            } })
          ])
        ]);
        cell.output.parentNode.insertBefore(box, cell.output);
        box.querySelector(".sagecell-accept").focus();
      });
    });
  }

  // ---- the cell ------------------------------------------------------------------------
  function codeFrom(input, opts) {
    if (opts.code !== undefined) return opts.code;
    if (input.tagName === "TEXTAREA" && !opts.codeLocation) return input.value;
    if (opts.codeLocation) {
      var src = typeof opts.codeLocation === "string" ? document.querySelector(opts.codeLocation) : opts.codeLocation;
      if (src) return src.value !== undefined ? src.value : src.textContent;
    }
    // the page's markup around the code (a newline after <script>, the indentation
    // before </script>) is not code: the first line break and trailing blanks go
    var s = input.querySelector('script[type="text/x-sage"], script[type="text/x-python"]');
    if (s) return s.textContent.replace(/^\n/, "").replace(/\s+$/, "");
    var ta = input.querySelector("textarea");
    if (ta) return ta.value;
    return input.textContent.trim() ? input.textContent.replace(/^\n/, "").replace(/\s+$/, "") : "";
  }

  // A permalink's interacts (JSON text or a list) as JSON text, or null when there is
  // nothing to restore.
  function interactsText(v) {
    if (v === undefined || v === null || v === "") return null;
    try {
      var list = typeof v === "string" ? JSON.parse(v) : v;
      return Array.isArray(list) && list.length ? JSON.stringify(list) : null;
    } catch (e) { return null; }
  }
  var INTERACTS_MOD = "__import__('cellserver.interacts', fromlist=['snapshot']).";
  var SNAPSHOT_EXPR = "__import__('IPython.display', fromlist=['JSON']).JSON(__import__('json').loads(" +
    INTERACTS_MOD + "snapshot()))";

  // SageMathCell's built-in templates (sagecell.templates): options a page names with
  // {template: sagecell.templates.minimal}; its own options win, hide lists add up.
  var TEMPLATES = {
    minimal: { editor: "textarea-readonly", hide: ["editor", "files", "permalink"] },   // an Evaluate button only
    restricted: { editor: "codemirror-readonly", hide: ["files", "permalink"] }          // code shown, not editable
  };
  var LANGUAGES = ["python"];     // what this server runs (SageMathCell's sagecell.allLanguages)

  // makeSagecell(options) as SageMathCell's: returns at once an object that is filled
  // in once the document is parsed (a call from <head> works): the cell itself when
  // inputLocation matches one element, {array: [cell, ...]} when it matches several,
  // one cell each; nothing when it matches none (a warning).  An element already made
  // a cell is left alone.
  function makeSagecell(opts) {
    opts = opts || {};
    if (opts.inputLocation === undefined || opts.inputLocation === null) throw new Error("makeSagecell: inputLocation is required");
    var info = {};
    domReady(function () { makeInto(info, opts); });
    return info;
  }

  function makeInto(info, opts) {
    var where = opts.inputLocation;
    var inputs = typeof where === "string" ? Array.prototype.slice.call(document.querySelectorAll(where)) : [where];
    inputs = inputs.filter(function (e) { return e && !e.hasAttribute("data-sagecell-made"); });
    if (!inputs.length) {
      if (window.console) console.warn("makeSagecell: no element matches inputLocation " + where);
      return;
    }
    var t = opts.template || {};
    opts = Object.assign({}, t, opts, { hide: [].concat(t.hide || [], opts.hide || []) });
    if (inputs.length === 1) { buildCell(info, opts, inputs[0]); return; }
    if (opts.outputLocation !== undefined) {
      if (window.console) console.error("makeSagecell: inputLocation must be unique if outputLocation is specified");
      return;
    }
    // linked cells made together: one kernel, none evaluated on load (as SageMathCell)
    if (opts.linked) opts.autoeval = false;
    info.array = inputs.map(function (input) { return buildCell({}, opts, input); });
  }

  function buildCell(cell, opts, input) {
    loadCss(ROOT + "static/cell.css");
    var code = codeFrom(input, opts);
    if (input.tagName === "TEXTAREA") {
      // a form's textarea made live (SageMathCell's rule): it stays in the form, hidden
      var holder = el("div");
      input.parentNode.insertBefore(holder, input);
      input.hidden = true;
      input.setAttribute("data-sagecell-made", "");
      cell.formTextarea = input;
      input = holder;
    }
    input.textContent = "";
    input.setAttribute("data-sagecell-made", "");
    var outLoc = opts.outputLocation ? (typeof opts.outputLocation === "string"
      ? document.querySelector(opts.outputLocation) : opts.outputLocation) : null;
    var hide = opts.hide || [];
    var editorKind = opts.editor || "codemirror";
    var readOnly = /readonly/.test(editorKind);
    var wantCodeMirror = /^codemirror/.test(editorKind) && hide.indexOf("editor") < 0;
    var languages = opts.languages || ["python"];
    Object.assign(cell, { opts: opts, input: input, requests: {}, current: null, kernel: null, startedAt: 0, timer: null,
                          codemirror: null });
    cells.push(cell);
    // (issue 7) control values from a permalink: handed to the kernel before the first run
    cell.restoreInteracts = interactsText(opts.interacts);

    // The textarea: the editor of the textarea modes, and of the codemirror modes until
    // (or unless) CodeMirror has loaded.  getCode/setCode read the active one.
    var editor = el("textarea", { class: "sagecell-editor", spellcheck: "false", "aria-label": "Code",
                                  rows: String(Math.max(3, Math.min(20, code.split("\n").length + 1))) });
    editor.value = code;
    if (readOnly) editor.readOnly = true;
    function getCode() { return cell.codemirror ? cell.codemirror.getValue() : editor.value; }
    function setCode(text) { if (cell.codemirror) cell.codemirror.setValue(text); else editor.value = text; }
    var evalButton = el("button", { type: "button", class: "sagecell-evaluate", text: opts.evalButtonText || "Evaluate" });
    var stopButton = el("button", { type: "button", class: "sagecell-stop", text: "Stop", disabled: "disabled",
                                    "aria-label": "Stop the running computation" });
    var shareButton = el("button", { type: "button", class: "sagecell-share", text: "Share" });
    var lang = el("select", { class: "sagecell-language", "aria-label": "Language" });
    languages.forEach(function (l) { lang.appendChild(el("option", { value: l, text: l })); });
    lang.value = opts.defaultLanguage || languages[0];
    var status = el("span", { class: "sagecell-status", role: "status", "aria-live": "polite" });
    var share = el("div", { class: "sagecell-links", hidden: "hidden" });
    var output = el("div", { class: "sagecell-output", "aria-label": "Output" });
    cell.output = output;
    // hide: ["evalButton"] hides only that button (as SageMathCell does): Stop,
    // Share and the status line stay.
    var toolbar = el("div", { class: "sagecell-toolbar" }, [hide.indexOf("evalButton") < 0 ? evalButton : null, stopButton,
      languages.length > 1 && hide.indexOf("language") < 0 ? lang : null,
      hide.indexOf("permalink") < 0 && hide.indexOf("share") < 0 ? shareButton : null, status]);
    var box = el("div", { class: "sagecell", "data-editor": "textarea" }, [hide.indexOf("editor") < 0 ? editor : null,
      toolbar, share]);
    input.appendChild(box);
    (outLoc || box).appendChild(output);
    cell.editor = editor;
    cell.root = box;

    function setStatus(text, kind) {
      status.textContent = text;
      status.className = "sagecell-status" + (kind ? " sagecell-state-" + kind : "");
      box.setAttribute("data-state", kind || "");
    }

    function tick() {
      if (!cell.startedAt) return;
      setStatus("running " + ((Date.now() - cell.startedAt) / 1000).toFixed(1) + " s", "running");
    }

    function getKernel() {
      if (opts.linked || opts.linkKey) {
        var key = opts.linkKey || "default";
        var k = linked[key];
        if (!k || k.dead) { k = linked[key] = new Kernel({ timeout: 600 }); }
        return k;
      }
      // A plain cell's kernel ends after its first execution; restoring interacts takes an
      // execution of its own before the code, so that kernel waits (its interacts then keep it).
      if (!cell.kernel || cell.kernel.dead || cell.kernel.finishedOnce) {
        if (cell.kernel && cell.kernel.finishedOnce && !cell.kernel.dead) cell.kernel.close();  // done with: give it back
        cell.kernel = new Kernel({ timeout: cell.restoreInteracts ? 60 : 0 });
      }
      return cell.kernel;
    }

    function finish(text, kind) {
      cell.startedAt = 0;
      clearInterval(cell.timer);
      stopButton.disabled = true;
      setStatus(text, kind);
    }

    function evaluate() {
      var src = getCode();
      ensureTerms(cell).then(function (ok) {
        if (!ok) { setStatus("not evaluated: the terms of service were declined", "declined"); return; }
        run(src);
      });
    }

    function run(src) {
      var kernel = getKernel();
      var area = el("div", { class: "sagecell-request" });
      output.textContent = "";
      output.appendChild(area);
      cell.current = null;     // output of earlier requests is dropped from here on
      // an abandoned run's clock stops: "queued" shows until this request starts, its own clock then
      cell.startedAt = 0;
      clearInterval(cell.timer);
      setStatus(kernel.ws ? "queued" : "starting", "queued");
      var restore = cell.restoreInteracts;
      kernel.start().then(function () {
        if (kernel.dead) throw new Error(kernel.dead.reason);
        if (!restore) return;
        cell.restoreInteracts = null;                                 // the first run only
        // (issue 7) the next interacts made start with the permalink's control values
        return kernel.request("execute_request", { code: INTERACTS_MOD + "restore(" + JSON.stringify(restore) + ")",
          silent: true, store_history: false, user_expressions: {}, allow_stdin: false }, "execute_reply", 15000)
          .then(function (c) {
            if (kernel.dead) throw new Error(kernel.dead.reason);
            if (c && c.status !== "ok" && window.console) console.warn("cellstack: could not restore the interacts:", c.evalue);
          });
      }).then(function () {
        if (!kernel.deadHooked) {
          kernel.deadHooked = true;
          kernel.onDead.push(function (reason, code) {
            if (/^finished/.test(reason || "") || kernel.closedByUs) return;   // ended as planned
            if (cell.kernel === kernel || opts.linked || opts.linkKey) {
              finish("kernel dead: " + reason, "dead");
            }
          });
        }
        kernel.helperOnly = false;
        var out = new Output(area, kernel);
        var id = kernel.send("execute_request", { code: src, silent: false, store_history: true,
                                                  user_expressions: {}, allow_stdin: false }, function (msg) {
          if (cell.current !== id) return;                            // an abandoned request
          var t = msg.msg_type || msg.header.msg_type, c = msg.content;
          if (t === "status") {
            if (c.execution_state === "busy") { if (!cell.startedAt) { cell.startedAt = Date.now(); cell.timer = setInterval(tick, 100); } tick(); }
            else if (c.execution_state === "idle") {
              var how = cell.interrupted ? ["interrupted", "interrupted"] : cell.errored ? ["finished with an error", "error"] : ["finished", "finished"];
              finish(how[0], how[1]);
              if (!opts.linked && !opts.linkKey) {
                kernel.finishedOnce = !kernel.widgets && !kernel.pendingWidgets;
                if (kernel.finishedOnce && kernel.timeout > 0) kernel.close();   // kept only for a restore
              }
            }
          } else if (t === "execute_reply") {
            (c.payload || []).forEach(function (p) {                  // "name?" and help(): IPython's pager
              if (p.source === "page" && p.data && p.data["text/plain"]) {
                var page = el("pre", { class: "sagecell-page" });
                ansiToNodes(p.data["text/plain"], page);
                area.appendChild(page);
              }
            });
            if (c.status === "aborted") finish("superseded", "finished");
            if (c.status === "error") {
              cell.errored = true;
              if (c.ename === "KeyboardInterrupt") cell.interrupted = true;
            }
          } else {
            // the iopub error comes before the iopub idle; the shell's execute_reply may come after it
            if (t === "error") { cell.errored = true; if (c.ename === "KeyboardInterrupt") cell.interrupted = true; }
            out.handle(msg);
          }
        });
        cell.current = id;
        cell.interrupted = false;
        cell.errored = false;
        stopButton.disabled = false;
      }).catch(function (err) {
        if (err.status === 429) finish("rate limited: try again in " + (err.retryAfter || 1) + " s", "ratelimited");
        else if (err.status === 503) finish("no capacity: all kernels are busy, try again soon", "nocapacity");
        else if (err.status === 403) { document.cookie = TOS_COOKIE + "=; path=/; max-age=0"; tosText = null;
                                       finish("the terms of service must be accepted", "declined"); }
        else finish("error: " + err.message, "dead");
      });
    }

    function stop() {
      var k = cell.kernel || linked[opts.linkKey || "default"];
      if (k && k.ws && !k.dead) { k.send("interrupt_request", {}, null, "control"); cell.interrupted = true; }
    }

    // (issue 7) the control values of the cell's live interacts, as JSON text ("[]": none).
    // Only from an idle kernel: an execution sent while one runs would interrupt it.
    function interactsSnapshot() {
      var k = cell.kernelOf();
      if (!k || !k.ws || k.dead || !(k.widgets || k.pendingWidgets) || cell.startedAt) return Promise.resolve("[]");
      return k.request("execute_request", { code: "", silent: true, store_history: false,
        user_expressions: { s: SNAPSHOT_EXPR }, allow_stdin: false }, "execute_reply", 5000).then(function (c) {
        var r = c && c.user_expressions && c.user_expressions.s;
        var list = r && r.status === "ok" && r.data && r.data["application/json"];
        return Array.isArray(list) ? JSON.stringify(list) : "[]";
      });
    }

    function doShare() {
      share.hidden = false;
      share.textContent = "making a link...";
      var code = getCode(), language = lang.value;
      interactsSnapshot().then(function (interacts) {
        var body = new URLSearchParams({ code: code, language: language, interacts: interacts, n: "1" });
        return fetch(ROOT + "permalink", { method: "POST", body: body, credentials: "include" })
          .then(function (r) { return r.json().then(function (j) { if (!r.ok) throw new Error(j.message || r.status); return j; }); })
          .then(function (j) { j.hasInteracts = interacts !== "[]"; return j; });
      })
        .then(function (j) {
          share.textContent = "";
          var long = ROOT + "?z=" + j.zip + "&lang=" + encodeURIComponent(language) +
            (j.hasInteracts && j.interacts ? "&interacts=" + String(j.interacts).replace(/=+$/, "") : "");
          [["Short link", ROOT + "?q=" + j.query], ["Long link", long]]
            .forEach(function (pair) {
              var a = el("a", { href: pair[1], class: "sagecell-link", target: "_blank", rel: "noopener", text: pair[1] });
              var copy = el("button", { type: "button", class: "sagecell-copy", text: "Copy",
                "aria-label": "Copy the " + pair[0].toLowerCase(), onclick: function () {
                  (navigator.clipboard ? navigator.clipboard.writeText(pair[1]) : Promise.reject()).then(
                    function () { copy.textContent = "Copied"; }, function () { copy.textContent = "Select and copy"; });
                } });
              share.appendChild(el("div", { class: "sagecell-linkrow" }, [el("span", { text: pair[0] + ": " }), a, copy]));
            });
        })
        .catch(function (e) { share.textContent = "could not make a link: " + e.message; });
    }

    evalButton.addEventListener("click", evaluate);
    stopButton.addEventListener("click", stop);
    shareButton.addEventListener("click", doShare);
    editor.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" && ev.shiftKey) { ev.preventDefault(); evaluate(); }
      else if (ev.key === "Tab" && !ev.shiftKey && !ev.altKey && !ev.ctrlKey && !ev.metaKey && !editor.readOnly &&
               cell.kernel && cell.kernel.ws && !cell.kernel.dead) {
        ev.preventDefault();
        completeTextarea();
      }
    });

    function completeTextarea() {
      var src = editor.value, pos = editor.selectionStart;
      completions(src, pos, false).then(function (r) {
        if (!r || editor.value !== src) return;
        var m = r.matches;
        if (m.length === 1) {
          editor.setRangeText(m[0], r.cursor_start, r.cursor_end, "end");
        } else if (m.length > 1) {
          setStatus("completions: " + m.slice(0, 12).join("  "), "finished");
        }
      });
    }

    // A kernel for completion and help: the cell's live one; else (CodeMirror only) one
    // started for it, which the next evaluation then uses.  null when there is none to
    // be had without asking the user (terms of service not accepted yet, refused).
    function helperKernel(mayStart) {
      var live = opts.linked || opts.linkKey ? linked[opts.linkKey || "default"] : cell.kernel;
      if (live && live.ws && live.ws.readyState === 1 && !live.dead && !live.finishedOnce) return Promise.resolve(live);
      if (!mayStart) return Promise.resolve(null);
      var terms = hasCookie(TOS_COOKIE) ? Promise.resolve("") : tosText !== null ? Promise.resolve(tosText) :
        fetch(ROOT + "tos.html", { credentials: "include" }).then(function (r) {
          return r.status === 200 ? r.text() : "";
        }).catch(function () { return ""; }).then(function (t) { tosText = t; return t; });
      return terms.then(function (text) {
        if (text && !hasCookie(TOS_COOKIE)) return null;
        var k = getKernel();
        if (!k.ws) k.helperOnly = true;
        return k.start().then(function () {
          if (k.dead) return null;
          if (k.helperOnly && !opts.linked && !opts.linkKey) {
            // started for help only: given back if no evaluation uses it soon
            clearTimeout(cell.helperTimer);
            cell.helperTimer = setTimeout(function () {
              if (k.helperOnly && cell.kernel === k) { cell.kernel = null; k.close(); }
            }, 300000);
          }
          return k;
        }, function () { return null; });
      });
    }

    // complete_request: Promise<{matches, cursor_start, cursor_end, types} | null> with
    // positions as string indices.
    function completions(src, pos, mayStart) {
      return helperKernel(mayStart).then(function (kernel) {
        if (!kernel) return null;
        return kernel.request("complete_request", { code: src, cursor_pos: toCodePoints(src, pos) }, "complete_reply", 10000);
      }).then(function (c) {
        if (!c || c.status === "error") return null;
        var md = c.metadata || {};
        return { matches: c.matches || [], cursor_start: fromCodePoints(src, c.cursor_start),
                 cursor_end: fromCodePoints(src, c.cursor_end),
                 types: (md._jupyter_types_experimental || []).map(function (t) { return { text: t.text, type: t.type }; }) };
      });
    }

    // inspect_request: Promise<plain text | null>.
    function introspect(src, pos) {
      return helperKernel(true).then(function (kernel) {
        if (!kernel) return "Help needs a running kernel: evaluate the cell once, then try again.";
        return kernel.request("inspect_request", { code: src, cursor_pos: toCodePoints(src, pos), detail_level: 0 },
                              "inspect_reply", 10000).then(function (c) {
          if (!c) return "The kernel did not answer in time.";
          if (c.status !== "ok" || !c.found) return null;
          var d = c.data || {};
          return d["text/plain"] !== undefined ? stripAnsi(d["text/plain"]) : null;
        });
      });
    }

    function upgradeEditor() {
      loadEditor().then(function (E) {
        if (cell.deleted || !editor.parentNode) return;
        var focused = document.activeElement === editor;
        var a = editor.selectionStart, b = editor.selectionEnd;
        var holder = el("div", { class: "sagecell-cm" + (readOnly ? " sagecell-cm-readonly" : "") });
        editor.parentNode.insertBefore(holder, editor);
        try {
          cell.codemirror = E.create(holder, {
            doc: editor.value, readOnly: readOnly, ariaLabel: "Code",
            onRun: evaluate,
            complete: function (src, pos) { return completions(src, pos, true); },
            inspect: introspect
          });
        } catch (e) {
          holder.remove();
          if (window.console) console.warn("cellstack: the code editor failed, keeping the textarea:", e);
          return;
        }
        editor.remove();
        cell.editor = holder;
        box.setAttribute("data-editor", "codemirror");
        if (focused) { cell.codemirror.focus(); cell.codemirror.setSelection(a, b); }
      }, function (err) {
        if (window.console) console.warn("cellstack: " + err.message + "; the code stays in a plain textarea");
      });
    }
    if (wantCodeMirror) upgradeEditor();

    cell.evaluate = evaluate;
    cell.getCode = getCode;
    cell.setCode = setCode;
    cell.kernelOf = function () { return cell.kernel || linked[opts.linkKey || "default"]; };
    if (opts.autoeval && code.trim()) setTimeout(evaluate, 0);
    // (issue 6) as SageMathCell's: called once, when the cell has been built
    if (typeof opts.callback === "function") setTimeout(function () {
      if (!cell.deleted) try { opts.callback(cell); } catch (e) { if (window.console) console.error(e); }
    }, 0);
    return cell;
  }

  function deleteSagecell(cell) {
    var i = cells.indexOf(cell);
    if (i >= 0) cells.splice(i, 1);
    cell.deleted = true;
    clearTimeout(cell.helperTimer);
    if (cell.codemirror) { cell.codemirror.destroy(); cell.codemirror = null; }
    if (cell.kernel) cell.kernel.close();
    if (cell.root) cell.root.remove();
    if (cell.output) cell.output.remove();
    if (cell.input) cell.input.removeAttribute("data-sagecell-made");
    if (cell.formTextarea) { cell.formTextarea.hidden = false; cell.formTextarea.removeAttribute("data-sagecell-made"); }
  }

  window.sagecell = window.sagecell || {};
  window.sagecell._cellstack = true;
  window.sagecell.root = ROOT;
  window.sagecell.makeSagecell = makeSagecell;
  window.sagecell.deleteSagecell = function (info) {
    (info && info.array ? info.array : [info]).forEach(function (c) { if (c && c.root) deleteSagecell(c); });
  };
  // older SageMathCell pages: sagecell.init(callback), the callback once the page is parsed
  window.sagecell.init = function (callback) { domReady(function () { if (typeof callback === "function") callback(); }); };
  window.sagecell.templates = TEMPLATES;
  window.sagecell.allLanguages = LANGUAGES;
  window.sagecell.cells = cells;
})();
