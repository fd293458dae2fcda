// cellstack widget manager: Jupyter widgets (ipywidgets 8, ipympl) in a cell.
//
// Bundled by build.mjs into cellserver/static/build/widgets.js, which sets
// the global `cellstackWidgets`.  A cell creates one manager per kernel
// connection:
//
//   const mgr = cellstackWidgets.createManager({
//     send: (msg) => ws.send(JSON.stringify(msg)),   // msg has channel, header, parent_header, metadata, content, buffers
//     session: "<client session id>",                // optional
//   });
//   ws.onmessage = (ev) => { const msg = JSON.parse(ev.data); if (mgr.handleMessage(msg)) return; ... };
//   // for display_data / execute_result whose data has WIDGET_MIMETYPE:
//   mgr.renderOutput(msg.content.data, outputElement);
//   // when the kernel dies or the socket closes:
//   mgr.disconnect("kernel died: ...");
//
// handleMessage consumes comm_open / comm_msg / comm_close, and the status
// and replies that answer the comm messages the widgets sent (ipywidgets
// throttles a model to one update in flight until its "idle" arrives).
// Binary buffers travel as base64 strings in the JSON frame's `buffers`.
//
// ipywidgets' Output widget (`with out:`, ipywidgets.interact,
// interactive_output) does not send its output over its comm: the kernel only
// sets its `msg_id` to the request being run, and the front end must put that
// request's iopub output (stream, display_data, execute_result, error,
// clear_output) into the widget instead of the cell, as JupyterLab's and
// Voila's managers do.  handleMessage consumes such output too.
import { HTMLManager } from '@jupyter-widgets/html-manager/lib/htmlmanager';
import { OutputModel } from '@jupyter-widgets/html-manager/lib/output';
import { ErrorWidgetView } from '@jupyter-widgets/base';
import { removeMath, replaceMath } from '@jupyter-widgets/base-manager/lib/latex';
import { HTMLView, HTMLMathView, StringView } from '@jupyter-widgets/controls';
import { MimeModel, RenderedHTML, RenderedSVG } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';
import '@jupyter-widgets/controls/css/widgets-base.css';
import '@jupyter-widgets/html-manager/css/output.css';
import '@lumino/widgets/style/index.css';
// Icons of widget buttons and of the ipympl toolbar (Font Awesome 4 names).
import '@fortawesome/fontawesome-free/css/fontawesome.min.css';
import '@fortawesome/fontawesome-free/css/solid.min.css';
import '@fortawesome/fontawesome-free/css/regular.min.css';
import '@fortawesome/fontawesome-free/css/v4-shims.min.css';
import './cellstack-widgets.css';

// The stylesheet esbuild writes beside the bundle (widgets.css) is loaded by
// the bundle itself, so a page only needs the one <script>.
const SCRIPT_SRC = document.currentScript && document.currentScript.src;
if (SCRIPT_SRC && !document.querySelector('link[data-cellstack-widgets]')) {
  const link = document.createElement('link');
  link.rel = 'stylesheet';
  link.href = SCRIPT_SRC.replace(/\.js(\?.*)?$/, '.css');
  link.setAttribute('data-cellstack-widgets', '');
  document.head.appendChild(link);
}

export const WIDGET_MIMETYPE = 'application/vnd.jupyter.widget-view+json';

function uuid() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID().replace(/-/g, '');
  return Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16)).join('');
}

function toBase64(buf) {
  const bytes = buf instanceof ArrayBuffer ? new Uint8Array(buf)
    : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function fromWire(b) {
  if (typeof b === 'string') {
    const s = atob(b);
    const bytes = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
    return new DataView(bytes.buffer);
  }
  if (b instanceof ArrayBuffer) return new DataView(b);
  if (ArrayBuffer.isView(b)) return new DataView(b.buffer, b.byteOffset, b.byteLength);
  return b;
}

async function loadExtra(moduleName) {
  if (moduleName === 'jupyter-matplotlib') {
    return import('jupyter-matplotlib');
  }
  throw new Error(`widget module ${moduleName} is not available here`);
}

// iopub message types an Output widget captures.
const CAPTURED = new Set(['stream', 'display_data', 'execute_result', 'error', 'clear_output']);

const BASE64_IMAGES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/bmp'];
const DECODE_WAIT_MS = 2000;

// Decode the images of `outputs` (the same data: URLs the renderer will use),
// so that once swapped in they are drawn at once, at their size.
function decodeImages(outputs) {
  const waits = [];
  for (const out of outputs || []) {
    for (const mime of BASE64_IMAGES) {
      const src = out && out.data && out.data[mime];
      if (typeof src !== 'string') continue;
      const img = new Image();
      img.src = `data:${mime};base64,${src}`;
      waits.push(img.decode().catch(() => {}));
    }
  }
  if (!waits.length) return null;
  let timer;
  const late = new Promise((resolve) => { timer = setTimeout(resolve, DECODE_WAIT_MS); });
  return Promise.race([Promise.all(waits), late]).finally(() => clearTimeout(timer));
}

// Kernel HTML and JavaScript never run in the page -------------------------------
// The page that embeds a cell is someone else's site and anonymous strangers
// write the kernel code, so what widgets show is untrusted, as the cell's own
// output is: html-manager's Output renders trusted (scripts in text/html run
// in the page) and ipywidgets' HTML / HTMLMath set their value as innerHTML
// (an <img onerror> runs in the page).  Here
// - an Output's outputs are untrusted, and text/html is shown sanitized in the
//   page (markup, tables, styles, classes stay; scripts and handlers go), or,
//   when it has a <script>, whole in a sandboxed iframe, as the cell shows
//   it; application/javascript runs in such a frame too; SVG is an <img>;
// - HTML / HTMLMath values are sanitized the same way;
// - an error widget's message (it quotes kernel-chosen class and module
//   names, shown as HTML on a click) is escaped.

// The cell's frame (embedded_sagecell.js): scripts allowed, same origin not,
// so it cannot touch the page, its cookies or its styles; it reports its
// height, which the page applies (bounded) to the frame that sent it.
const FRAME_KEY = 'cellstackWidgetFrame';
function sandboxedFrame(html, kind) {
  const id = uuid();
  const frame = document.createElement('iframe');
  frame.className = `cellstack-widget-frame cellstack-widget-frame-${kind}`;
  frame.setAttribute('sandbox', 'allow-scripts');
  frame.setAttribute('title', 'output');
  frame.setAttribute('data-widget-frame', id);
  frame.srcdoc = '<!doctype html><meta charset=utf-8><style>body{margin:0;font-family:sans-serif;display:flow-root}</style><body>'
    + html + `<script>(function(){function h(){parent.postMessage({${FRAME_KEY}:'${id}',`
    + 'height:Math.ceil(document.body.getBoundingClientRect().height)+4},\'*\')}'
    + 'addEventListener(\'load\',h);new ResizeObserver(h).observe(document.body);h()})()<\/script>';
  return frame;
}
window.addEventListener('message', (ev) => {
  const id = ev.data && ev.data[FRAME_KEY];
  if (typeof id !== 'string') return;
  const frame = document.querySelector(`iframe[data-widget-frame="${CSS.escape(id)}"]`);
  if (frame && ev.source === frame.contentWindow) {
    frame.style.height = `${Math.min(Math.max(Number(ev.data.height) || 0, 20), 2000)}px`;
  }
});

const HAS_SCRIPT = /<script[\s>/]/i;

// The same mime model, its trust set: the output area's trust is not what
// decides for these renderers.
function withTrust(model, trusted) {
  return new MimeModel({ data: model.data, metadata: model.metadata, trusted });
}

class UntrustedHTML extends RenderedHTML {
  render(model) {
    const source = String(model.data[this.mimeType]);
    if (!HAS_SCRIPT.test(source)) return super.render(withTrust(model, false));
    this.node.textContent = '';
    this.node.appendChild(sandboxedFrame(source, 'html'));
    return Promise.resolve();
  }
}

class FramedJavaScript extends Widget {
  constructor(options) {
    super();
    this.mimeType = options.mimeType;
    this.addClass('cellstack-widget-js');
  }
  renderModel(model) {
    const source = String(model.data[this.mimeType]).replace(/<\/script/gi, '<\\/script');
    this.node.textContent = '';
    this.node.appendChild(sandboxedFrame(`<script>${source}<\/script>`, 'js'));
    return Promise.resolve();
  }
}

// An SVG shown as an <img> (as the cell does) runs none of its scripts: safe
// to show from an untrusted output, which the standard renderer refuses.
class ImageSVG extends RenderedSVG {
  render(model) { return super.render(withTrust(model, true)); }
}

// The renderers above, for the manager's registry, each at its mime type's
// standard rank; all safe, so an untrusted output area uses them.  A widget
// view (an interact nested in an interact's output) is safe as well: it is
// this manager's own rendering.
function installUntrustedRenderers(registry) {
  const widgets = registry.getFactory(WIDGET_MIMETYPE);
  registry.addFactory(Object.assign({}, widgets, { safe: true }), registry.getRank(WIDGET_MIMETYPE));
  const factories = [
    { mimeTypes: ['text/html'], make: (o) => new UntrustedHTML(o) },
    { mimeTypes: ['text/javascript', 'application/javascript'], make: (o) => new FramedJavaScript(o) },
    { mimeTypes: ['image/svg+xml'], make: (o) => new ImageSVG(o) },
  ];
  for (const { mimeTypes, make } of factories) {
    const rank = registry.getRank(mimeTypes[0]);
    registry.addFactory({ safe: true, mimeTypes, createRenderer: make }, rank);
  }
}

// ipywidgets' HTML and HTMLMath, their value sanitized; the rest of their
// update (StringView's: description, tooltip) as before.
// HTMLMath's math is set aside while sanitizing, as ipywidgets does for HTML
// descriptions (removeMath escapes it), so `$a<b$` stays math.
function sanitizedHTMLView(Base, math) {
  return class extends Base {
    update() {
      const { sanitizer } = this.model.widget_manager.renderMime;
      const value = String(this.model.get('value') || '');
      if (math) {
        const parts = removeMath(value);
        this.content.innerHTML = replaceMath(sanitizer.sanitize(parts.text), parts.math);
        this.typeset(this.content);
      } else {
        this.content.innerHTML = sanitizer.sanitize(value);
      }
      return StringView.prototype.update.call(this);
    }
  };
}
const SAFE_CONTROLS = new Map([
  ['HTMLView', sanitizedHTMLView(HTMLView, false)],
  ['HTMLMathView', sanitizedHTMLView(HTMLMathView, true)],
]);

function escapeHTML(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

// Every error widget (a class that failed to load, a model that failed to
// build) is an ErrorWidgetView subclass whose message is shown as HTML.
const errorRender = ErrorWidgetView.prototype.render;
ErrorWidgetView.prototype.render = function render() {
  const message = this.generateErrorMessage;
  this.generateErrorMessage = function escaped() {
    const { msg, stack } = message.call(this);
    return { msg: escapeHTML(msg), stack: escapeHTML(stack) };
  };
  return errorRender.call(this);
};

// html-manager's OutputModel, plus:
// - untrusted outputs (see above);
// - captured iopub output (see above): the manager hands it in through the
//   model's comm queue (a `cellstack_output` pseudo message), so it is applied
//   in order with the kernel's state updates of the same widget (e.g.
//   `out.outputs = ()` then a print), after the model's class has loaded;
// - a swap without flicker: new `outputs` (an interact's whole update) replace
//   the old ones only once their images are decoded; until then the old
//   output stays, so the area never shows a collapsed, image-less state.
// Both go through one queue (`_swap`), which keeps their order.
class CapturingOutputModel extends OutputModel {
  initialize(attributes, options) {
    super.initialize(attributes, options);
    this._outputs.trusted = false;
  }

  _handle_comm_msg(msg) {
    const output = msg.cellstack_output;
    if (!output) return super._handle_comm_msg(msg);
    this.state_change = this.state_change.then(() => this._queue(() => this.add(output)));
    return this.state_change;
  }

  _queue(step) {
    this._swap = (this._swap || Promise.resolve()).then(step)
      .catch((e) => console.error('widget output failed', e));
    return this._swap;
  }

  setOutputs(model, value, options) {
    if (options && options.newMessage) return;
    const outputs = JSON.parse(JSON.stringify(this.get('outputs')));
    this._queue(async () => {
      await decodeImages(outputs);
      this.clear_output();
      this._outputs.fromJSON(outputs);
    });
  }

  add(msg) {
    const type = msg.header.msg_type;
    if (type === 'clear_output') {
      this.clear_output(Boolean(msg.content.wait));
    } else {
      const { transient, ...content } = msg.content; // eslint-disable-line no-unused-vars
      this._outputs.add(Object.assign({ output_type: type }, content));
    }
    // As JupyterLab's: the kernel's `outputs` follows what the page shows.
    this.set('outputs', this._outputs.toJSON(), { newMessage: true });
    this.save_changes();
  }
}

class WsComm {
  constructor(manager, commId, targetName) {
    this._manager = manager;
    this.comm_id = commId;
    this.target_name = targetName;
    this._onMsg = null;
    this._onClose = null;
  }
  open(data, callbacks, metadata, buffers) {
    return this._manager._sendComm('comm_open',
      { comm_id: this.comm_id, target_name: this.target_name, data: data || {} },
      callbacks, metadata, buffers);
  }
  send(data, callbacks, metadata, buffers) {
    return this._manager._sendComm('comm_msg', { comm_id: this.comm_id, data: data || {} },
      callbacks, metadata, buffers);
  }
  close(data, callbacks, metadata, buffers) {
    this._manager._comms.delete(this.comm_id);
    return this._manager._sendComm('comm_close', { comm_id: this.comm_id, data: data || {} },
      callbacks, metadata, buffers);
  }
  // A model attaches its handlers only once its class has loaded (a promise
  // later): messages that come before that wait here, in order.
  on_msg(cb) {
    this._onMsg = cb;
    const early = this._early || [];
    this._early = null;
    for (const [kind, msg] of early) {
      if (kind === 'msg') cb(msg); else this._handleClose(msg);
    }
  }
  on_close(cb) { this._onClose = cb; }
  _handleMsg(msg) {
    if (this._onMsg) return this._onMsg(msg);
    (this._early = this._early || []).push(['msg', msg]);
  }
  _handleClose(msg) {
    if (!this._onMsg && this._early) { this._early.push(['close', msg]); return; }
    if (this._onClose) this._onClose(msg);
  }
}

export class CellWidgetManager extends HTMLManager {
  constructor(connection) {
    super({ loader: loadExtra });
    installUntrustedRenderers(this.renderMime);
    this._connection = connection;
    this._session = connection.session || uuid();
    this._comms = new Map();
    this._callbacks = new Map();   // msg_id -> callbacks of a message we sent
    this._roots = new Set();       // elements views were rendered into
    this._outputComms = new Set(); // comm ids of Output widgets
    this._capturing = new Map();   // msg_id -> comm ids of the Outputs capturing it (the last wins)
    this._captureOf = new Map();   // Output comm id -> its msg_id
    this.disconnected = false;
    this.sent = 0;
  }

  _message(msgType, content, metadata, buffers) {
    return {
      channel: 'shell',
      header: {
        msg_id: uuid(), msg_type: msgType, session: this._session, username: 'cellstack',
        date: new Date().toISOString(), version: '5.3',
      },
      parent_header: {},
      metadata: metadata || {},
      content,
      buffers: (buffers || []).map(toBase64),
    };
  }

  _sendComm(msgType, content, callbacks, metadata, buffers) {
    const msg = this._message(msgType, content, metadata, buffers);
    if (this.disconnected) return msg.header.msg_id;
    if (callbacks) this._callbacks.set(msg.header.msg_id, callbacks);
    this._connection.send(msg);
    this.sent += 1;
    return msg.header.msg_id;
  }

  // ManagerBase hooks -------------------------------------------------------
  async _create_comm(targetName, modelId, data, metadata, buffers) {
    const comm = new WsComm(this, modelId || uuid(), targetName);
    this._comms.set(comm.comm_id, comm);
    if (data || metadata) comm.open(data, {}, metadata, buffers);
    return comm;
  }

  _get_comm_info() {
    return new Promise((resolve) => {
      const msg = this._message('comm_info_request', { target_name: 'jupyter.widget' });
      this._callbacks.set(msg.header.msg_id, {
        shell: { reply: (reply) => resolve(reply.content.comms || {}) },
      });
      this._connection.send(msg);
    });
  }

  loadClass(className, moduleName, moduleVersion) {
    if (moduleName === '@jupyter-widgets/output' && className === 'OutputModel') {
      return Promise.resolve(CapturingOutputModel);
    }
    if (moduleName === '@jupyter-widgets/controls' && SAFE_CONTROLS.has(className)) {
      return Promise.resolve(SAFE_CONTROLS.get(className));
    }
    return super.loadClass(className, moduleName, moduleVersion);
  }

  // Output capture ------------------------------------------------------------
  // Followed from the raw messages, synchronously: the models apply state
  // later (promises), but the output that follows a msg_id change must be
  // routed the moment it arrives.
  _setCapture(commId, msgId) {
    const old = this._captureOf.get(commId);
    if (old === msgId) return;
    if (old) {
      const ids = this._capturing.get(old).filter((c) => c !== commId);
      if (ids.length) this._capturing.set(old, ids); else this._capturing.delete(old);
    }
    this._captureOf.delete(commId);
    if (msgId) {
      this._captureOf.set(commId, msgId);
      this._capturing.set(msgId, (this._capturing.get(msgId) || []).concat([commId]));
    }
  }

  _followOutputState(commId, content) {
    const data = content.data || {};
    const state = data.state || {};
    if (!this._outputComms.has(commId) || !('msg_id' in state)) return;
    if (data.method !== undefined && data.method !== 'update') return;
    this._setCapture(commId, state.msg_id);
  }

  _captureOutput(type, parentId, msg) {
    if (!CAPTURED.has(type) || !parentId) return false;
    const ids = this._capturing.get(parentId);
    const comm = ids && this._comms.get(ids[ids.length - 1]);
    if (!comm) return false;
    comm._handleMsg({ cellstack_output: msg });
    return true;
  }

  // Messages from the kernel --------------------------------------------------
  handleMessage(raw) {
    const msg = Object.assign({}, raw, { buffers: (raw.buffers || []).map(fromWire) });
    const type = msg.header && msg.header.msg_type;
    const content = msg.content || {};
    if (type === 'comm_open') {
      if (content.target_name !== 'jupyter.widget') return false;
      const comm = new WsComm(this, content.comm_id, content.target_name);
      this._comms.set(comm.comm_id, comm);
      const state = (content.data && content.data.state) || {};
      if (state._model_module === '@jupyter-widgets/output' && state._model_name === 'OutputModel') {
        this._outputComms.add(comm.comm_id);
        this._followOutputState(comm.comm_id, content);
      }
      this.handle_comm_open(comm, msg).catch((e) => console.error('widget comm_open failed', e));
      return true;
    }
    if (type === 'comm_msg' || type === 'comm_close') {
      const comm = this._comms.get(content.comm_id);
      if (!comm) return false;
      if (type === 'comm_msg') {
        this._followOutputState(content.comm_id, content);
        comm._handleMsg(msg);
      } else {
        this._setCapture(content.comm_id, '');
        this._outputComms.delete(content.comm_id);
        this._comms.delete(content.comm_id);
        comm._handleClose(msg);
      }
      return true;
    }
    const parentId = msg.parent_header && msg.parent_header.msg_id;
    if (this._captureOutput(type, parentId, msg)) return true;
    const cbs = parentId && this._callbacks.get(parentId);
    if (!cbs) return false;
    if (type === 'status') {
      if (cbs.iopub && cbs.iopub.status) cbs.iopub.status(msg);
      if (content.execution_state === 'idle') this._callbacks.delete(parentId);
    } else if (msg.channel === 'shell') {
      if (cbs.shell && cbs.shell.reply) cbs.shell.reply(msg);
      if (type === 'comm_info_reply') this._callbacks.delete(parentId);
    } else if (cbs.iopub && cbs.iopub.output) {
      cbs.iopub.output(msg);
    }
    return true;
  }

  // For the cell ---------------------------------------------------------------
  async renderOutput(data, element) {
    const spec = data[WIDGET_MIMETYPE] || data;
    if (!spec.model_id || !this.has_model(spec.model_id)) {
      // A widget this connection never saw (e.g. from an earlier kernel): say so.
      const note = document.createElement('pre');
      note.className = 'cellstack-widgets-missing';
      note.textContent = data['text/plain'] || 'A widget that is no longer available.';
      element.appendChild(note);
      return null;
    }
    const model = await this.get_model(spec.model_id);
    const view = await this.create_view(model);
    element.classList.add('cellstack-widget-area');
    this._roots.add(element);
    await this.display_view(view, element);
    return view;
  }

  hasModel(modelId) {
    return this.has_model(modelId);
  }

  disconnect(reason) {
    if (this.disconnected) return;
    this.disconnected = true;
    for (const cbs of this._callbacks.values()) {
      if (cbs.iopub && cbs.iopub.status) {
        try { cbs.iopub.status({ content: { execution_state: 'idle' } }); } catch (e) { /* closing */ }
      }
    }
    this._callbacks.clear();
    Promise.all(Object.values(this._models)).then((models) => {
      for (const m of models) {
        if (m.get && m.get('disabled') === false) m.set('disabled', true);
      }
    }).catch(() => {});
    for (const el of this._roots) {
      el.classList.add('cellstack-widgets-disconnected');
      if (!el.querySelector(':scope > .cellstack-widgets-note')) {
        const note = document.createElement('div');
        note.className = 'cellstack-widgets-note';
        note.setAttribute('role', 'status');
        note.textContent = 'Disconnected' + (reason ? `: ${reason}` : '') + ' (controls no longer work)';
        el.prepend(note);
      }
    }
  }
}

export function createManager(connection) {
  if (!connection || typeof connection.send !== 'function') {
    throw new TypeError('createManager needs {send(msg)}');
  }
  return new CellWidgetManager(connection);
}
