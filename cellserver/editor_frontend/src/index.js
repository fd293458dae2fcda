// The code editor of cellstack cells (issue 6): CodeMirror 6 with Python.
//
// Bundled by build.mjs into cellserver/static/build/editor.js, which sets the
// global `cellstackEditor`; embedded_sagecell.js loads it the first time a
// cell with editor "codemirror" or "codemirror-readonly" appears and swaps it
// in for the cell's textarea.  The API:
//
//   var ed = cellstackEditor.create(parent, {
//     doc: "print(1)", readOnly: false, ariaLabel: "Code",
//     onRun: function () {},                       // Shift+Enter
//     complete: function (code, pos) {},           // Tab: Promise<{matches, cursor_start, cursor_end, types?} | null>
//     inspect: function (code, pos) {},            // Shift+Tab: Promise<text | null>
//     onChange: function (code) {},
//   });
//   ed.getValue(); ed.setValue(text); ed.focus(); ed.setSelection(anchor, head); ed.destroy();
//
// Positions are JavaScript string indices (UTF-16 units), both ways; the
// caller converts to the kernel's code points.  `complete` answering null
// means "no kernel": the editor then completes from the words of the code
// and Python's builtins.  Tab with only blanks before the cursor indents;
// Escape then Tab moves the focus out of the editor (CodeMirror's rule).
import { EditorState, StateEffect, StateField, Prec } from '@codemirror/state';
import {
  EditorView, keymap, lineNumbers, drawSelection, highlightActiveLine, highlightActiveLineGutter,
  highlightSpecialChars, showPanel,
} from '@codemirror/view';
import { defaultKeymap, history, historyKeymap, indentMore, indentLess } from '@codemirror/commands';
import { indentOnInput, indentUnit, bracketMatching, syntaxHighlighting } from '@codemirror/language';
import {
  autocompletion, completionKeymap, closeBrackets, closeBracketsKeymap, startCompletion,
  acceptCompletion, completionStatus,
} from '@codemirror/autocomplete';
import { python, localCompletionSource, globalCompletion } from '@codemirror/lang-python';
import { classHighlighter } from '@lezer/highlight';

export const version = '0.1.0';

// ---- the help panel (Shift+Tab) ----------------------------------------------------
const setHelp = StateEffect.define();
const helpField = StateField.define({
  create: () => null,
  update(value, tr) {
    for (const e of tr.effects) if (e.is(setHelp)) value = e.value;
    return value;
  },
  provide: (f) => showPanel.from(f, (help) => (help === null ? null : (view) => helpPanel(view, help))),
});

function helpPanel(view, help) {
  const dom = document.createElement('div');
  dom.className = 'cm-cellstack-help';
  dom.setAttribute('role', 'region');
  dom.setAttribute('aria-label', 'Help for the name at the cursor');
  const head = document.createElement('div');
  head.className = 'cm-cellstack-help-head';
  const title = document.createElement('span');
  title.textContent = help.title || 'Help';
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'cm-cellstack-help-close';
  close.textContent = '\u00d7';
  close.title = 'Close (Escape)';
  close.setAttribute('aria-label', 'Close the help');
  close.addEventListener('click', () => { view.dispatch({ effects: setHelp.of(null) }); view.focus(); });
  head.append(title, close);
  const body = document.createElement('pre');
  body.className = 'cm-cellstack-help-text';
  body.setAttribute('aria-live', 'polite');
  body.textContent = help.text;
  dom.append(head, body);
  return { dom, top: false };
}

// ---- completion: the kernel's answer, shown by CodeMirror's popup ---------------------
const JUPYTER_TYPES = {
  function: 'function', builtin_function_or_method: 'function', method: 'method', class: 'class',
  type: 'class', module: 'namespace', keyword: 'keyword', statement: 'variable', instance: 'variable',
  param: 'variable', property: 'property', path: 'text', magic: 'keyword',
};

function localSource(ctx) {
  const results = [localCompletionSource(ctx), globalCompletion(ctx)].filter((r) => r && r.options.length);
  if (!results.length) return null;
  const from = Math.min(...results.map((r) => r.from));
  const seen = new Set();
  const options = [];
  for (const r of results) {
    if (r.from !== from) continue;
    for (const o of r.options) if (!seen.has(o.label)) { seen.add(o.label); options.push(o); }
  }
  return { from, options, validFor: /^\w*$/ };
}

export function create(parent, opts = {}) {
  let destroyed = false;
  let pending = null;              // what the next explicit completion shows
  let requestSeq = 0;

  function source(ctx) {
    const p = pending;
    pending = null;
    if (!p || !ctx.explicit) return null;
    if (p.local) return localSource(ctx);
    return { from: p.from, to: Math.max(p.to, ctx.pos), options: p.options, validFor: /^[\w.]*$/ };
  }

  function showHelp(view, text, title) {
    view.dispatch({ effects: setHelp.of(text === null ? null : { text, title }) });
  }

  function requestCompletion(view) {
    const state = view.state;
    const pos = state.selection.main.head;
    const seq = ++requestSeq;
    const asked = opts.complete ? Promise.resolve().then(() => opts.complete(state.doc.toString(), pos)) : Promise.resolve(null);
    asked.catch(() => null).then((r) => {
      if (destroyed || seq !== requestSeq || view.state.doc !== state.doc || view.state.selection.main.head !== pos) return;
      if (!r) { pending = { local: true }; startCompletion(view); return; }
      const matches = [...new Set(r.matches || [])];
      if (!matches.length) return;
      const from = r.cursor_start, to = r.cursor_end;
      if (matches.length === 1) {
        view.dispatch({
          changes: { from, to, insert: matches[0] },
          selection: { anchor: from + matches[0].length },
          userEvent: 'input.complete',
          scrollIntoView: true,
        });
        return;
      }
      const types = {};
      for (const t of r.types || []) if (t && t.text) types[t.text] = JUPYTER_TYPES[t.type] || undefined;
      pending = { from, to, options: matches.map((m) => ({ label: m, type: types[m] })) };
      startCompletion(view);
    });
  }

  function tab(view) {
    if (completionStatus(view.state) === 'active') return acceptCompletion(view);
    const { state } = view;
    const sel = state.selection.main;
    if (state.selection.ranges.length > 1 || !sel.empty) return opts.readOnly ? false : indentMore(view);
    const line = state.doc.lineAt(sel.head);
    const before = line.text.slice(0, sel.head - line.from);
    if (/^\s*$/.test(before)) {
      if (opts.readOnly) return false;         // let Tab move the focus on
      const unit = state.facet(indentUnit);
      const col = before.replace(/\t/g, ' '.repeat(state.tabSize)).length;
      const insert = unit === '\t' ? '\t' : ' '.repeat(unit.length - (col % unit.length));
      view.dispatch(state.update(state.replaceSelection(insert), { userEvent: 'input.indent', scrollIntoView: true }));
      return true;
    }
    if (opts.readOnly) return false;
    requestCompletion(view);
    return true;
  }

  function shiftTab(view) {
    const { state } = view;
    const sel = state.selection.main;
    if (!sel.empty && state.doc.lineAt(sel.from).number !== state.doc.lineAt(sel.to).number) {
      return opts.readOnly ? false : indentLess(view);
    }
    if (!opts.inspect) return false;
    const pos = sel.head;
    const seq = ++requestSeq;
    Promise.resolve().then(() => opts.inspect(state.doc.toString(), pos)).catch(() => null).then((text) => {
      if (destroyed || seq !== requestSeq) return;
      showHelp(view, text || 'No documentation found for the name at the cursor.', 'Help');
    });
    return true;
  }

  function escape(view) {
    if (view.state.field(helpField) !== null) showHelp(view, null);
    return false;                                // Escape still closes popups and lets Tab leave
  }

  const extensions = [
    lineNumbers(),
    highlightActiveLineGutter(),
    highlightSpecialChars(),
    history(),
    drawSelection(),
    indentOnInput(),
    indentUnit.of('    '),
    EditorState.tabSize.of(4),
    python(),
    syntaxHighlighting(classHighlighter),                     // stable tok-* classes, coloured by cell.css
    bracketMatching(),
    closeBrackets(),
    autocompletion({ override: [source], activateOnTyping: false, defaultKeymap: true, icons: true }),
    highlightActiveLine(),
    helpField,
    Prec.highest(keymap.of([
      { key: 'Shift-Enter', run: () => { if (opts.onRun) opts.onRun(); return true; } },
      { key: 'Tab', run: tab },
      { key: 'Shift-Tab', run: shiftTab },
      { key: 'Escape', run: escape },
    ])),
    keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap, ...completionKeymap]),
    EditorView.contentAttributes.of({
      'aria-label': opts.ariaLabel || 'Code',
      class: 'sagecell-editor',
      spellcheck: 'false',
      autocapitalize: 'off',
      autocorrect: 'off',
      translate: 'no',
    }),
    EditorView.updateListener.of((u) => { if (u.docChanged && opts.onChange) opts.onChange(u.state.doc.toString()); }),
  ];
  if (opts.readOnly) {
    extensions.push(EditorState.readOnly.of(true), EditorView.contentAttributes.of({ 'aria-readonly': 'true' }));
  }
  const view = new EditorView({ parent, state: EditorState.create({ doc: opts.doc || '', extensions }) });

  return {
    view,
    getValue: () => view.state.doc.toString(),
    setValue(text) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: String(text) } });
    },
    setSelection(anchor, head) {
      const n = view.state.doc.length;
      const clip = (x) => Math.max(0, Math.min(n, x | 0));
      view.dispatch({ selection: { anchor: clip(anchor), head: clip(head === undefined ? anchor : head) }, scrollIntoView: true });
    },
    showHelp: (text, title) => showHelp(view, text, title),
    focus: () => view.focus(),
    destroy() {
      if (destroyed) return;
      destroyed = true;
      view.destroy();
    },
  };
}
