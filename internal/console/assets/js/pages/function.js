// The function page (#/functions/NAME): charts of its activity over a
// range, recent invocations with their log lines (and, for asynchronous
// ones, their attempts and destination), a live log tail, the
// configuration and its form, usage and advice, invoke and delete. It
// polls every 5 s until the page is left.
import { api } from '../api.js';
import { h, fmt, card, kv, table, emptyState, errorBox, poll, liveTable, scroller, figure, POLL_MS } from '../ui.js';
import {
  savedRange, isAbort, enc, slot, picker, charts, logTail, logList, usageCard, adviceCard, workloadPage, destroyOnAbort,
} from './workload.js';
import { invokeCard, configCard, deleteButton } from './function-actions.js';

const CHARTS = [
  { testid: 'chart-invocations', title: 'Invocations', unit: 'count', series: [{ label: 'Invocations', key: 'invocations', kind: 'bars' }] },
  { testid: 'chart-errors', title: 'Errors and throttles', unit: 'count', series: [{ label: 'Errors', key: 'errors', kind: 'bars' }, { label: 'Throttles', key: 'throttles', kind: 'bars' }] },
  { testid: 'chart-duration', title: 'Duration p50 / p99', unit: 'ms', series: [{ label: 'p50', key: 'durationP50Ms' }, { label: 'p99', key: 'durationP99Ms', dash: [6, 4] }] },
  { testid: 'chart-coldstarts', title: 'Cold starts', unit: 'count', series: [{ label: 'Cold starts', key: 'coldStarts', kind: 'bars' }] },
  { testid: 'chart-instances', title: 'Instances and busy instances', unit: 'count', series: [{ label: 'Instances', key: 'instances', kind: 'step' }, { label: 'Busy', key: 'concurrency', kind: 'step', dash: [6, 4] }] },
];

// Triggers whose invocations went through the asynchronous queue, whose
// status GET /v1/invocations/ID keeps.
const QUEUED = new Set(['async', 'topic', 'schedule']);

// An asynchronous invocation in one of these states runs no more.
const DONE = new Set(['succeeded', 'failed']);

// reported: the lines hold the platform's REPORT line (the invocation's
// last line).
const reported = (lines) => lines.some((l) => /^REPORT\b/.test(l.text) || l.stream === 'report');

export function render(main, params, signal) {
  const name = params.name;
  const base = '/v1/functions/' + enc(name);
  let range = savedRange();

  const page = workloadPage({ kind: 'function', label: 'Functions', name, statusId: 'fn-status' });
  const { status, body, tools, here } = page;
  // An error loading the function itself shows here, with a retry.
  const loadErr = h('div', { class: 'slot-error', 'data-testid': 'fn-error' });
  let fnNow = null; // the function as last loaded
  const chartSet = charts(CHARTS);
  const invocations = invocationsCard(name, base, signal, () => fnNow);
  const usage = usageCard('function', name, `Usage is recorded minute by minute: invoke it below or with stratus invoke ${name}, and its cost, energy and carbon show here within a minute or two.`);
  const advice = adviceCard(name, `invoke ${name}`);
  const config = configCard(name, base, signal, (fn) => showFunction(fn));
  const invoke = invokeCard(name, base, signal, () => Promise.all([refreshFast(), usage.refresh(range, signal), advice.refresh(range, signal)]));
  const tail = logTail({
    path: base + '/logs', signal, testid: 'log-tail', label: 'Live log lines of ' + name,
    empty: `No log lines in the last hour: invoke ${name} to see its output here.`,
  });

  const rangeEl = picker(range, (r) => {
    range = r;
    loadSeries();
    usage.refresh(range, signal);
    advice.refresh(range, signal);
  });

  tools.append(rangeEl, deleteButton(name, base, signal));
  page.mount(main);
  body.append(
    loadErr,
    card('Activity', chartSet.el),
    h('div', { class: 'page-grid' },
      h('div', { class: 'col-wide' }, invocations.el),
      invoke.el,
      card('Live log tail', tail.el),
      config.el,
      usage.el,
      h('div', { class: 'col-wide' }, advice.el)));

  function showFunction(fn) {
    fnNow = fn;
    const c = fn.config || {};
    const parts = [
      c.runtime || c.image || '—',
      `version ${fn.version}`,
      `${fmt.num(fn.instances.live)} ${fn.instances.live === 1 ? 'instance' : 'instances'} (${fmt.num(fn.instances.busy)} busy)`,
    ];
    if (fn.async) parts.push(`async queue ${fmt.num(fn.async.depth)}` + (fn.async.depth ? `, oldest ${fmt.dur(fn.async.oldestAgeSec)}` : ''));
    if (c.throttled) parts.push('throttled');
    const text = parts.join(' · ');
    if (status.textContent !== text) status.textContent = text;
    config.show(fn);
  }

  async function loadFunction() {
    try {
      const fn = await api('GET', base, { signal });
      here.present();
      loadErr.replaceChildren();
      showFunction(fn);
    } catch (err) {
      if (isAbort(err, signal)) return;
      if (err.status === 404) {
        here.missing('function', name, `stratus deploy ${name}`);
        return;
      }
      if (!fnNow) status.textContent = 'Could not load the function.';
      loadErr.replaceChildren(errorBox(new Error('the function: ' + err.message), () => loadFunction()));
    }
  }

  async function loadSeries() {
    const want = range;
    try {
      const s = await api('GET', base + '/series', { query: { range: want }, signal });
      if (want === range) chartSet.update(s);
    } catch (err) {
      if (!isAbort(err, signal)) chartSet.error(err);
    }
  }

  function refreshFast() {
    return Promise.all([loadFunction(), loadSeries(), invocations.refresh()]);
  }

  let tick = 0;
  poll(async () => {
    const slow = tick++ % 6 === 0; // usage, advice, versions: every 30 s
    await Promise.all([
      refreshFast(),
      slow ? usage.refresh(range, signal) : null,
      slow ? advice.refresh(range, signal) : null,
      slow ? config.refreshVersions() : null,
    ]);
  }, POLL_MS, signal);
  destroyOnAbort(signal, chartSet, advice, invocations);
}

// invocationsCard is the table of the newest invocations; a row opens
// the detail below it: the invocation's log lines and, when it went
// through the queue, its status, attempts and destination.
function invocationsCard(name, base, signal, fnNow) {
  const s = slot('slot-invocations');
  const detail = h('div', { class: 'invocation-detail', 'data-testid': 'invocation-detail', 'aria-live': 'polite' });
  const el = card('Recent invocations', s.el, detail);
  let selected = null;
  // What the open detail shows, refreshed at each poll while it is open
  // (a queued invocation's state and destination come after its record).
  let shown = null;

  const close = () => {
    const btn = lt.el.querySelector(`tr[data-request-id="${CSS.escape(selected || '')}"] button.row-open`);
    selected = null;
    shown = null;
    detail.replaceChildren();
    lt.mark();
    if (btn) btn.focus();
  };

  const open = (rec) => {
    if (selected === rec.requestId) return close();
    selected = rec.requestId;
    lt.mark();
    const head = h('h3', { tabindex: '-1', text: 'Invocation ' + rec.requestId });
    const logsSlot = slot('slot-invlogs');
    const asyncSlot = QUEUED.has(rec.trigger) ? slot('slot-async') : null;
    detail.replaceChildren(h('div', { class: 'detail-box' },
      h('div', { class: 'detail-head' }, head,
        h('button', { type: 'button', class: 'secondary', text: 'Close', 'aria-label': 'Close the invocation detail', onclick: close })),
      kv([
        ['Start', fmt.time(rec.start)], ['Outcome', rec.outcome + (rec.errorType ? ` (${rec.errorType})` : '')],
        ['Trigger', rec.trigger || '—'], ['Version', rec.qualifier || String(rec.version)],
        ['Instance', rec.instance || '—'], ['CPU time', fmt.ms(rec.cpuMs)],
        ['Cost', figure('usd', rec.usage && rec.usage.costUSD)], ['Carbon', figure('gco2', rec.usage && rec.usage.carbonG)],
      ]),
      asyncSlot ? h('section', { 'aria-label': 'Asynchronous status' }, h('h4', { text: 'Attempts and destination' }), asyncSlot.el) : null,
      h('h4', { text: 'Log lines' }), logsSlot.el));
    head.focus();
    shown = { rec, logsSlot, asyncSlot };
    return reload();
  };

  // reload shows the open detail's figures again, until they are final:
  // its lines hold the REPORT line and, for a queued invocation, its
  // state is done and its outcome delivered (or no destination awaits it).
  const reload = () => {
    const d = shown;
    if (!d) return null;
    return Promise.all([d.logsDone ? null : showLogs(d), d.asyncSlot && !d.asyncDone ? showAsync(d) : null]);
  };

  const showLogs = async (d) => {
    try {
      const r = await api('GET', base + '/logs', { query: { request: d.rec.requestId }, signal });
      const sig = (r.lines || []).map((l) => l.id).join();
      if (shown !== d) return;
      d.logsDone = reported(r.lines || []);
      if (d.logSig === sig) return;
      d.logSig = sig;
      d.logsSlot.show(logList(r.lines || [], 'invocation-logs', ['No log lines for this invocation', 'It printed nothing; the platform lines appear once it has finished.']));
    } catch (err) {
      if (!isAbort(err, signal) && shown === d) d.logsSlot.error(err, () => showLogs(d));
    }
  };

  const showAsync = async (d) => {
    const rec = d.rec;
    const sl = d.asyncSlot;
    try {
      const [st, att] = await Promise.all([
        api('GET', '/v1/invocations/' + enc(rec.requestId), { signal }).catch((err) => (err.status === 404 ? null : Promise.reject(err))),
        api('GET', base + '/invocations', { query: { request: rec.requestId }, signal }),
      ]);
      const sig = JSON.stringify([st, att]);
      if (shown !== d) return;
      const c = (fnNow() && fnNow().config) || {};
      const awaits = st && (st.state === 'succeeded' ? c.onSuccess : c.onFailure);
      d.asyncDone = !!st && DONE.has(st.state) && (!awaits || !!st.destinationState);
      if (d.asyncSig === sig) return;
      d.asyncSig = sig;
      const attempts = (att.invocations || []).slice().reverse();
      sl.show(h('div', {},
        st ? kv([
          ['State', st.state], ['Attempt', fmt.num(st.attempt)],
          ['Queued at', fmt.time(st.enqueuedAt)], ['Updated', fmt.time(st.updatedAt)],
          ['Error', st.errorType ? `${st.errorType}: ${st.errorMessage || ''}` : '—'],
          ['Destination', st.destination ? `${st.destination} (${st.destinationState || 'pending'})` : 'none'],
        ]) : h('p', { class: 'hint', text: 'The queue keeps no status for this request (it may have expired).' }),
        scroller(table({
          caption: 'Attempts (records with this request ID)',
          columns: [
            { key: 'n', label: '#', numeric: true, render: (r) => String(attempts.indexOf(r) + 1) },
            { key: 'start', label: 'Start', render: (r) => fmt.time(r.start) },
            { key: 'durationMs', label: 'Duration', numeric: true, render: (r) => fmt.ms(r.durationMs) },
            { key: 'outcome', label: 'Outcome', render: (r) => outcome(r) },
          ],
          rows: attempts,
          empty: emptyState('No attempt has run yet', 'It is waiting in the queue.'),
        }))));
    } catch (err) {
      if (!isAbort(err, signal) && shown === d) sl.error(err, () => showAsync(d));
    }
  };

  // The table is updated in place (rows keyed by request ID), so a row
  // keeps its keyboard focus across polls.
  const lt = liveTable({
    caption: 'Newest invocations first; choose one to see its log lines',
    rowKey: (r) => r.requestId,
    rowAttrs: (r) => ({ 'data-testid': 'invocation-row-' + r.requestId, 'data-request-id': r.requestId }),
    onRow: (r) => open(r),
    expanded: (r) => r.requestId === selected,
    columns: [
      { key: 'requestId', label: 'Request ID', render: (r) => h('code', { class: 'reqid', text: r.requestId }) },
      { key: 'start', label: 'Start', render: (r) => fmt.time(r.start) },
      { key: 'durationMs', label: 'Duration', numeric: true, render: (r) => fmt.ms(r.durationMs) },
      { key: 'billedDurationMs', label: 'Billed', numeric: true, render: (r) => fmt.ms(r.billedDurationMs) },
      { key: 'maxMemoryUsedMB', label: 'Memory used', numeric: true, render: (r) => `${fmt.num(r.maxMemoryUsedMB)} / ${fmt.num(r.memorySizeMB)} MB` },
      { key: 'initDurationMs', label: 'Init', numeric: true, render: (r) => (r.cold ? fmt.ms(r.initDurationMs) : '—') },
      { key: 'outcome', label: 'Outcome', render: (r) => outcome(r) },
      { key: 'trigger', label: 'Trigger', render: (r) => r.trigger || '—' },
    ],
    empty: emptyState('No invocations yet', `Invoke it below or with stratus invoke ${name}.`),
  });
  lt.el.dataset.testid = 'invocations-table';
  const errArea = h('div', { class: 'slot-error' });
  let loaded = false;

  return {
    el,
    destroy() {
      lt.destroy();
    },
    async refresh() {
      try {
        const r = await api('GET', base + '/invocations', { query: { limit: 50 }, signal });
        lt.update(r.invocations || []);
        errArea.replaceChildren();
        if (!loaded) {
          loaded = true;
          s.show(h('div', {}, errArea, scroller(lt.el)));
        }
        await reload();
      } catch (err) {
        if (isAbort(err, signal)) return;
        if (!loaded) s.error(err, () => this.refresh());
        else errArea.replaceChildren(errorBox(err, () => this.refresh()));
      }
    },
  };
}

// outcome is an invocation's outcome as a badge, with its error type.
function outcome(r) {
  const ok = r.outcome === 'success';
  return h('span', { class: 'badge ' + (ok ? 'badge-ok' : 'badge-bad') }, r.outcome + (r.errorType ? ` · ${r.errorType}` : '') + (r.cold ? ' · cold' : ''));
}
