// ui.js: small DOM helpers shared by every page. No framework: h builds
// elements, the rest are the console's few components (tables, cards,
// error and empty states, dialogs, polling).

const EVENTS = new Set(['onclick', 'oninput', 'onsubmit', 'onchange', 'onkeydown', 'onkeyup', 'onfocus', 'onblur']);

// h builds an element: h('button', {class: 'primary', onclick: fn}, 'Save').
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (EVENTS.has(k) && typeof v === 'function') {
        el.addEventListener(k.slice(2), v);
      } else if (k === 'class') {
        el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
      } else if (k === 'text') {
        el.textContent = String(v);
      } else if (k === 'for') {
        el.htmlFor = v;
      } else if (k === 'value') {
        el.value = v;
      } else if (k === 'checked') {
        el.checked = !!v;
      } else if (k === 'hidden' || k === 'disabled' || k === 'required' || k === 'readonly' || k === 'multiple' || k === 'open') {
        if (v) el.setAttribute(k, '');
      } else if (k === 'dataset' && typeof v === 'object') {
        for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = dv;
      } else if (k === 'style') {
        // The CSP forbids style attributes; set properties through the CSSOM.
        if (typeof v === 'object') Object.assign(el.style, v);
      } else if (v === true) {
        el.setAttribute(k, '');
      } else {
        el.setAttribute(k, String(v));
      }
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

const nf0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const nf2 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

function missing(x) {
  return x === null || x === undefined || (typeof x === 'number' && Number.isNaN(x)) || x === '';
}

function toDate(x) {
  if (x instanceof Date) return x;
  if (typeof x === 'number') return new Date(x * 1000);
  const d = new Date(x);
  return Number.isNaN(d.getTime()) ? null : d;
}

const sig3 = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 3 });
const nf2f = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });

// small formats an amount that may be tiny (a cost, grams of CO2e) in a
// few characters: two decimals, and "<0.01" below that (fmt.exact gives
// the whole figure, for a title).
function small(x) {
  if (x !== 0 && Math.abs(x) < 0.01) return x < 0 ? '>-0.01' : '<0.01';
  return nf2.format(x);
}

function compact(x) {
  const a = Math.abs(x);
  if (a >= 1e9) return nf1.format(x / 1e9) + ' G';
  if (a >= 1e6) return nf1.format(x / 1e6) + ' M';
  if (a >= 1e4) return nf1.format(x / 1e3) + ' k';
  return Number.isInteger(x) ? nf0.format(x) : nf2.format(x);
}

// fmt formats figures for people; every formatter answers '—' for a
// missing value.
export const fmt = {
  ms(x) {
    if (missing(x)) return '—';
    x = Number(x);
    if (x >= 60000) return nf1.format(x / 60000) + ' min';
    if (x >= 1000) return nf2.format(x / 1000) + ' s';
    if (x >= 10) return nf0.format(x) + ' ms';
    return nf2.format(x) + ' ms';
  },
  num(x) {
    if (missing(x)) return '—';
    return compact(Number(x));
  },
  pct(x) {
    if (missing(x)) return '—';
    return nf1.format(Number(x) * 100) + ' %';
  },
  usd(x) {
    if (missing(x)) return '—';
    x = Number(x);
    if (x !== 0 && Math.abs(x) < 0.01) return (x < 0 ? '>-' : '<') + '$0.01';
    return '$' + nf2f.format(x);
  },
  gco2(x) {
    if (missing(x)) return '—';
    x = Number(x);
    if (x >= 1000) return nf2.format(x / 1000) + ' kgCO₂e';
    return small(x) + ' gCO₂e';
  },
  wh(x) {
    if (missing(x)) return '—';
    x = Number(x);
    if (x >= 1000) return nf2.format(x / 1000) + ' kWh';
    return small(x) + ' Wh';
  },
  bytes(x) {
    if (missing(x)) return '—';
    x = Number(x);
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (Math.abs(x) >= 1024 && i < units.length - 1) {
      x /= 1024;
      i++;
    }
    return (i === 0 ? nf0.format(x) : nf1.format(x)) + ' ' + units[i];
  },
  time(x) {
    if (missing(x)) return '—';
    const d = toDate(x);
    if (!d) return '—';
    const now = new Date();
    const sameDay = d.toDateString() === now.toDateString();
    return sameDay
      ? d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' })
      : d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
  },
  ago(x) {
    if (missing(x)) return '—';
    const d = toDate(x);
    if (!d) return '—';
    const s = (Date.now() - d.getTime()) / 1000;
    if (s < 0) return 'in ' + fmt.dur(-s);
    if (s < 5) return 'just now';
    return fmt.dur(s) + ' ago';
  },
  dur(sec) {
    if (missing(sec)) return '—';
    let s = Math.max(0, Number(sec));
    if (s < 1) return nf0.format(s * 1000) + ' ms';
    if (s < 60) return nf0.format(Math.floor(s)) + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min' + (s % 60 >= 1 && m < 10 ? ' ' + Math.floor(s % 60) + ' s' : '');
    const hr = Math.floor(m / 60);
    if (hr < 48) return hr + ' h' + (m % 60 ? ' ' + (m % 60) + ' min' : '');
    return Math.floor(hr / 24) + ' d' + (hr % 24 ? ' ' + (hr % 24) + ' h' : '');
  },
  // exact formats an amount of kind usd, gco2 or wh with three
  // significant digits however small (for a title beside the short form).
  exact(kind, x) {
    if (missing(x)) return '—';
    const v = sig3.format(Number(x));
    if (kind === 'usd') return '$' + v;
    return v + (kind === 'gco2' ? ' gCO₂e' : kind === 'wh' ? ' Wh' : '');
  },
};

// figure is a figure of kind (usd, gco2, wh) that never wraps: its short
// form, and the exact one as its title when they differ.
export function figure(kind, x) {
  const text = fmt[kind](x);
  const exact = fmt.exact(kind, x);
  return h('span', { class: 'fig', title: exact !== text && text !== '—' ? exact : null }, text);
}

// POLL_MS is how often the pages ask for new figures.
export const POLL_MS = 5000;

// workloadStatus is the status of a function or a service as the
// console names it: [text, class] (class: ok, warn, bad or idle).
export function workloadStatus(kind, w) {
  if (kind === 'function') {
    const i = w.instances || {};
    if ((i.live || 0) === 0) return ['Scaled to zero', 'idle'];
    return [i.busy > 0 ? 'Running' : 'Warm', 'ok'];
  }
  switch (w.status) {
    case 'Ready':
      return ['Ready', 'ok'];
    case 'ScaledToZero':
      return ['Scaled to zero', 'idle'];
    case 'Starting':
      return ['Starting', 'warn'];
    case 'CrashLoopBackOff':
      return ['Crash loop', 'bad'];
    default:
      return [w.status || 'Unknown', 'warn'];
  }
}

// safeHref answers u if it is a path on this origin or an http(s) URL
// (what a link may lead to), else null.
function safeHref(u) {
  if (typeof u !== 'string' || u === '') return null;
  if (u.startsWith('/') && !u.startsWith('//')) return u;
  return /^https?:\/\//i.test(u) ? u : null;
}

// link is an <a> to url when it is safe (safeHref), else its text.
export function link(url, text) {
  const href = safeHref(url);
  return href ? h('a', { href }, text || url) : h('span', null, text || url || '—');
}

// command is a command line to type, as code that wraps between words
// only (never inside --flag).
export function command(text) {
  const words = text.split(' ');
  return h('code', { class: 'cmd' }, words.map((w, i) => [h('span', { class: 'nw' }, w), i < words.length - 1 ? ' ' : null]));
}

// noFunctions is the empty state of a list of functions: how to deploy
// one, and what more to do (more, a node or string, optional).
export function noFunctions(...more) {
  return emptyState('No functions yet.', h('span', null, 'Deploy one: ', command('stratus deploy NAME --runtime python3 --handler app.handler DIR'), ...(more.length ? more : ['.'])));
}

// stat is one figure of a row of totals; set(text, alert) shows text (its
// unit smaller, when it ends with one) and marks the figure when alert;
// title, when given, is the exact figure.
export function stat(label, testid) {
  const v = h('p', { class: 'stat-value', 'data-testid': testid }, '—');
  const el = h('div', { class: 'stat' }, h('p', { class: 'stat-label' }, label), v);
  return {
    el,
    set(text, alert = false, title = null) {
      el.classList.toggle('alert', alert);
      if (title && title !== text) v.title = title;
      else v.removeAttribute('title');
      if (v.dataset.text === text) return;
      v.dataset.text = text;
      const m = /^(.*\d)\s+([^\d\s]+)$/.exec(text);
      if (m) v.replaceChildren(m[1], h('span', { class: 'stat-unit' }, m[2]));
      else v.textContent = text;
    },
  };
}

// thead is a table's header row.
function thead(columns) {
  return h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.numeric ? 'num' : null }, c.label))));
}

// openable makes a row open something: its first cell holds a button
// (aria-expanded, the focus and Enter or Space go to it) around the
// cell's content, and a click anywhere on the row (not on another
// control) does the same. Answers the element the first cell's content
// goes in.
function openable(tr, td, getRow, onRow) {
  const btn = h('button', { type: 'button', class: 'row-open', 'aria-expanded': 'false' });
  td.replaceChildren(btn);
  btn.addEventListener('click', (e) => onRow(getRow(), e));
  tr.addEventListener('click', (e) => {
    if (e.target.closest('a,button,input,select,textarea')) return;
    onRow(getRow(), e);
  });
  return btn;
}

// table builds a <table> (wrap it in scroller() to let a wide table
// scroll inside its card; cards also scroll wide content themselves).
export function table({ columns, rows, empty, onRow, caption, rowKey, label }) {
  const t = h('table', { class: onRow ? 'data clickable' : 'data', 'aria-label': caption ? null : label || null });
  if (caption) t.appendChild(h('caption', { class: 'visually-hidden' }, caption));
  t.appendChild(thead(columns));
  const tb = h('tbody');
  if (!rows || rows.length === 0) {
    t.classList.add('is-empty');
    tb.appendChild(h('tr', { class: 'empty-row' }, h('td', { colspan: String(columns.length) }, empty || 'Nothing here yet.')));
  } else {
    for (const row of rows) {
      const tr = h('tr');
      if (rowKey) {
        const key = typeof rowKey === 'function' ? rowKey(row) : row[rowKey];
        if (key !== undefined && key !== null) tr.dataset.key = String(key);
      }
      columns.forEach((c, j) => {
        const v = c.render ? c.render(row) : row[c.key];
        const td = h('td', { class: c.numeric ? 'num' : null });
        tr.appendChild(td);
        setCell(j === 0 && onRow ? openable(tr, td, () => row, onRow) : td, v);
      });
      tb.appendChild(tr);
    }
  }
  t.appendChild(tb);
  return t;
}

// emptyState says that there is nothing yet and what to do next.
export function emptyState(title, hint) {
  return h('div', { class: 'empty' }, h('p', { class: 'empty-title' }, title), hint ? h('p', { class: 'empty-hint' }, hint) : null);
}

// errorBox shows an error in place (role=alert) with an optional retry.
export function errorBox(err, retry) {
  const msg = err && err.message ? err.message : String(err || 'unknown error');
  const status = err && err.status ? ` (HTTP ${err.status})` : '';
  return h(
    'div',
    { class: 'error-box', role: 'alert' },
    h('p', null, h('strong', null, 'Error'), status, ': ', msg),
    retry ? h('button', { type: 'button', class: 'secondary', onclick: () => retry() }, 'Retry') : null,
  );
}

// offline reports whether every one of results (Promise.allSettled's)
// failed because the server could not be reached (ApiError status 0).
export function offline(results) {
  return results.every((r) => r.status === 'rejected' && r.reason && r.reason.status === 0 && r.reason.name !== 'AbortError');
}

// offlineBox is the one error a page shows while the server cannot be
// reached: its figures are those of its last update, and it keeps trying.
export function offlineBox(since, retry) {
  const kept = since ? ` (the figures below are from ${since})` : '';
  return errorBox(new Error(`cannot reach the Stratus server${kept}; trying again every ${POLL_MS / 1000} seconds.`), retry);
}

// card is a titled section of a page.
export function card(title, ...children) {
  return h('section', { class: 'card' }, title ? h('h2', null, title) : null, ...children);
}

// kv is a definition list of [label, value] pairs.
export function kv(pairs) {
  const dl = h('dl', { class: 'kv' });
  for (const p of pairs) {
    if (!p) continue;
    const [k, v] = p;
    dl.appendChild(h('div', null, h('dt', null, k), h('dd', null, v === undefined || v === null || v === '' ? '—' : v)));
  }
  return dl;
}

// poll calls fn now and then every ms until signal aborts. A throwing fn
// does not stop it (fn shows its own errors); calls never overlap.
export function poll(fn, ms, signal) {
  let timer = null;
  const tick = async () => {
    if (signal && signal.aborted) return;
    try {
      await fn();
    } catch (err) {
      if (!(err && err.name === 'AbortError')) console.warn('poll:', err);
    }
    if (signal && signal.aborted) return;
    timer = setTimeout(tick, ms);
  };
  if (signal) signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  tick();
}

// confirmDialog asks a yes/no question in a modal <dialog>; it answers
// true only for the confirm button.
export function confirmDialog(text, confirmLabel = 'Confirm', signal) {
  return new Promise((resolve) => {
    // The focus goes back where it was (the button that asked) once the
    // dialog closes, however it closes.
    const back = document.activeElement;
    const cancel = h('button', { type: 'button', class: 'secondary', value: 'cancel' }, 'Cancel');
    const ok = h('button', { type: 'button', class: 'danger', value: 'ok', 'data-testid': 'confirm-ok' }, confirmLabel);
    const id = 'dlg-' + Math.random().toString(36).slice(2);
    const d = h('dialog', { class: 'dialog', 'aria-labelledby': id }, h('p', { id }, text), h('div', { class: 'actions' }, cancel, ok));
    let answered = false;
    const done = (v) => {
      if (answered) return;
      answered = true;
      if (d.open) d.close();
      d.remove();
      if (signal) signal.removeEventListener('abort', onAbort);
      if (back && back.isConnected && typeof back.focus === 'function') back.focus();
      resolve(v);
    };
    // Leaving the page closes the dialog: the answer is no.
    const onAbort = () => done(false);
    if (signal) {
      if (signal.aborted) return resolve(false);
      signal.addEventListener('abort', onAbort, { once: true });
    }
    cancel.addEventListener('click', () => done(false));
    ok.addEventListener('click', () => done(true));
    d.addEventListener('cancel', () => done(false));
    d.addEventListener('close', () => done(false));
    document.body.appendChild(d);
    d.showModal();
    cancel.focus();
  });
}

const RANGES = ['15m', '1h', '24h', '7d'];

// rangePicker is a labelled group of toggle buttons 15m/1h/24h/7d.
export function rangePicker(current, onChange) {
  const label = 'range-label-' + Math.random().toString(36).slice(2);
  const group = h('div', { class: 'range-picker', role: 'group', 'aria-labelledby': label }, h('span', { id: label, class: 'range-label' }, 'Range'));
  const buttons = RANGES.map((r) =>
    h(
      'button',
      {
        type: 'button',
        class: 'seg',
        'aria-pressed': r === current ? 'true' : 'false',
        'data-testid': 'range-' + r,
        onclick: () => {
          for (const b of buttons) b.setAttribute('aria-pressed', b === buttons[RANGES.indexOf(r)] ? 'true' : 'false');
          onChange(r);
        },
      },
      r,
    ),
  );
  group.append(...buttons);
  return group;
}

// live replaces el's children with render()'s result without a layout
// jump: el keeps at least its current height while the new content
// takes its place.
export function live(el, render) {
  const hgt = el.offsetHeight;
  if (hgt > 0) el.style.minHeight = hgt + 'px';
  const out = render();
  if (Array.isArray(out)) el.replaceChildren(...out.filter((x) => x !== null && x !== undefined));
  else if (out === null || out === undefined) el.replaceChildren();
  else el.replaceChildren(out);
  // Let the box shrink again only once the new content has laid out.
  requestAnimationFrame(() => {
    el.style.minHeight = '';
  });
  return el;
}

// skeleton is a placeholder of n grey rows that reserves the space a
// table will take while its data loads.
export function skeleton(n = 3, label = 'Loading') {
  const box = h('div', { class: 'skeleton', role: 'status', 'aria-label': label, 'aria-busy': 'true' });
  for (let i = 0; i < n; i++) box.appendChild(h('div', { class: 'skeleton-row' }));
  return box;
}

// scroller wraps a wide element (a table) so it scrolls in its card.
export function scroller(child) {
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': child.getAttribute('aria-label') || (child.caption ? child.caption.textContent : 'table') }, child);
}

function setCell(td, v) {
  if (v === undefined || v === null || v === '') v = '—';
  if (v instanceof Node) {
    // An equal node is left in place (it may hold the focus).
    if (td.childNodes.length === 1 && (td.firstChild === v || td.firstChild.isEqualNode(v))) return;
    td.replaceChildren(v);
    return;
  }
  const s = String(v);
  if (td.childNodes.length !== 1 || td.firstChild.nodeType !== Node.TEXT_NODE || td.textContent !== s) td.textContent = s;
}

// liveTable is a table that a poll updates in place: rows are keyed
// (rowKey(row)), so a row, its focus and its charts survive an update;
// only changed text is rewritten. columns: [{label, numeric?, render?(row),
// update?(td, row, state)}] where update, when given, fills td itself (on
// creation and every update; state is the cell's own object, and
// state.destroy() is called when its row goes). rowAttrs(row) gives the
// new row's attributes (for example a data-testid). onRow(row) makes rows
// open something (see openable); expanded(row) says whether a row's is
// open (its button's aria-expanded, the row's class selected). Answers
// {el, update(rows), mark(), destroy()}; el is the <table>; mark() sets
// the rows' expanded state again.
export function liveTable({ columns, caption, label, empty, rowKey, rowAttrs, onRow, expanded }) {
  const t = h('table', { class: onRow ? 'data clickable' : 'data', 'aria-label': caption ? null : label || null });
  if (caption) t.appendChild(h('caption', { class: 'visually-hidden' }, caption));
  t.appendChild(thead(columns));
  const tb = h('tbody');
  t.appendChild(tb);
  const rows = new Map();
  const emptyTr = h('tr', { class: 'empty-row' }, h('td', { colspan: String(columns.length) }, empty || 'Nothing here yet.'));
  const drop = (key) => {
    const r = rows.get(key);
    r.tr.remove();
    for (const s of r.state) if (s.destroy) s.destroy();
    rows.delete(key);
  };
  return {
    el: t,
    update(list) {
      list = list || [];
      const seen = new Set(list.map((r) => String(rowKey(r))));
      for (const key of [...rows.keys()]) if (!seen.has(key)) drop(key);
      t.classList.toggle('is-empty', list.length === 0);
      if (list.length === 0) {
        if (emptyTr.parentNode !== tb) tb.replaceChildren(emptyTr);
        return;
      }
      if (emptyTr.parentNode === tb) emptyTr.remove();
      list.forEach((row, i) => {
        const key = String(rowKey(row));
        let r = rows.get(key);
        if (!r) {
          const tr = h('tr', rowAttrs ? rowAttrs(row) : null);
          tr.dataset.key = key;
          const tds = columns.map((c) => h('td', { class: c.numeric ? 'num' : c.class || null }));
          tr.append(...tds);
          const cell = { tr, tds, state: columns.map(() => ({})), row };
          if (onRow) cell.btn = openable(tr, tds[0], () => cell.row, onRow);
          r = cell;
          rows.set(key, r);
        }
        r.row = row;
        columns.forEach((c, j) => {
          const td = j === 0 && r.btn ? r.btn : r.tds[j];
          if (c.update) c.update(td, row, r.state[j]);
          else setCell(td, c.render ? c.render(row) : row[c.key]);
        });
        if (tb.children[i] !== r.tr) tb.insertBefore(r.tr, tb.children[i] || null);
      });
      this.mark();
    },
    mark() {
      if (!expanded) return;
      for (const r of rows.values()) {
        const on = !!expanded(r.row);
        r.tr.classList.toggle('selected', on);
        if (r.btn) r.btn.setAttribute('aria-expanded', String(on));
      }
    },
    destroy() {
      for (const key of [...rows.keys()]) drop(key);
    },
  };
}

// liveSection is a card holding a liveTable: grey rows until the first
// answer, then the table (scrolling sideways in the card when wide); an
// error shows in place above the table, which keeps its last rows, and
// goes away with the next good answer. extra is shown below the table.
// Answers {el, ok(rows), fail(err, retry)}.
export function liveSection(title, table, { id, extra } = {}) {
  const status = h('div', { class: 'section-status' });
  const body = h('div', { class: 'section-body' }, skeleton(3, `Loading ${title.toLowerCase()}`));
  const el = card(title, status, body, extra || null);
  if (id) el.id = id;
  let shown = false;
  return {
    el,
    ok(rows) {
      status.replaceChildren();
      if (!shown) {
        body.replaceChildren(scroller(table.el));
        shown = true;
      }
      table.update(rows);
    },
    fail(err, retry) {
      status.replaceChildren(errorBox(err, retry));
      if (!shown) body.replaceChildren();
    },
  };
}
