// Parts the function page and the service page share: sections that show
// their loading, error and empty states in place, the time-series charts,
// a live log tail, the usage card and the advice card with its break-even
// chart. Every figure comes from the public /v1 API.
import { api, follow } from '../api.js';
import { h, fmt, card, kv, table, emptyState, errorBox, live, rangePicker, scroller, skeleton, figure, POLL_MS } from '../ui.js';
import { timeChart, xyChart } from '../chart.js';

// The range the operator picked last, kept for the session so that going
// from one workload to another keeps it.
let lastRange = '1h';
export function savedRange() {
  return lastRange;
}

// rate formats a request rate with three significant digits (0.00109,
// 1.25, 340), as fmt.num would round a small rate to 0.
export function rate(x) {
  if (x === null || x === undefined || Number.isNaN(Number(x))) return '—';
  x = Number(x);
  if (x === 0) return '0 req/s';
  if (Math.abs(x) >= 100) return fmt.num(x) + ' req/s';
  return Number(x.toPrecision(3)) + ' req/s';
}

// isAbort reports whether err is the end of a request because the page
// was left (the signal aborted), which is not an error to show.
export function isAbort(err, signal) {
  return (signal && signal.aborted) || (err && err.name === 'AbortError');
}

// enc encodes a workload's name for a path segment.
export const enc = encodeURIComponent;

// slot is an element whose content is replaced in place: a skeleton while
// it loads, then content, an empty state, or an error with a retry
// button. Its minimum height is set in pages.css so nothing below it
// jumps.
export function slot(cls, testid) {
  const el = h('div', { class: 'slot ' + (cls || ''), 'data-testid': testid || null, 'aria-busy': 'true' }, skeleton(3));
  return {
    el,
    show(node) {
      el.removeAttribute('aria-busy');
      live(el, () => node);
    },
    error(err, retry) {
      el.removeAttribute('aria-busy');
      live(el, () => errorBox(err, retry));
    },
  };
}

// picker is the range picker (its buttons carry data-testid range-15m,
// range-1h, ...); the choice is kept for the next workload's page.
export function picker(current, onChange) {
  return rangePicker(current, (r) => {
    lastRange = r;
    onChange(r);
  });
}

// charts builds a grid of time-series charts from defs: [{key, title,
// unit, testid, series: [{label, key, kind?, color?, dash?, perSec?}],
// bands?}],
// each fed from a series answer's field key (the contract's
// /v1/.../series envelope). The grid's boxes have fixed heights.
export function charts(defs) {
  const grid = h('div', { class: 'chart-grid' });
  const items = defs.map((d) => {
    const box = h('div', { class: 'chart-box', 'data-testid': d.testid });
    const fig = h('figure', { class: 'chart-card' }, h('figcaption', { text: d.title }), box);
    grid.append(fig);
    return { d, box, chart: null };
  });
  const note = h('p', { class: 'chart-note hint', role: 'status' });
  const wrap = h('div', { class: 'charts' }, grid, note);
  return {
    el: wrap,
    // update draws answer (a series envelope); bandsOf(answer) gives the
    // shaded windows of the charts whose def has bands: true.
    update(answer, bandsOf) {
      note.textContent = '';
      note.classList.remove('form-error');
      for (const it of items) {
        if (!it.chart) {
          it.chart = timeChart(it.box, {
            title: it.d.title, unit: it.d.unit, height: 170,
            series: it.d.series.map((s) => ({ label: s.label, kind: s.kind, color: s.color, dash: s.dash })),
          });
        }
        const ys = it.d.series.map((s) => {
          const v = (answer.series && answer.series[s.key]) || answer.t.map(() => null);
          // perSec: a count in the bucket as a rate over the bucket.
          return s.perSec ? v.map((x) => (x == null ? null : x / answer.stepSec)) : v;
        });
        // The last bucket is drawn to its end (the answer's end), not
        // cut at its start.
        const n = answer.t.length;
        const end = n ? Math.max(answer.end || 0, answer.t[n - 1] + (answer.stepSec || 0)) : 0;
        it.chart.update(answer.t, ys, { end, bands: it.d.bands && bandsOf ? bandsOf(answer) : undefined });
      }
    },
    error(err) {
      note.textContent = 'Charts not updated: ' + (err && err.message ? err.message : String(err)) + '. Retrying in 5 s.';
      note.classList.add('form-error');
    },
    destroy() {
      for (const it of items) if (it.chart) it.chart.destroy();
    },
  };
}

// panicBands turns a 0/1 series (the autoscaler's panic mode per bucket)
// into [from, to] windows in unix seconds: each run of 1s, from its first
// bucket's start to its last bucket's end.
export function panicBands(t, panic, stepSec) {
  const out = [];
  if (!panic) return out;
  let from = null;
  for (let i = 0; i < t.length; i++) {
    if (panic[i] > 0 && from === null) from = t[i];
    if (!(panic[i] > 0) && from !== null) {
      out.push([from, t[i]]);
      from = null;
    }
  }
  if (from !== null) out.push([from, t[t.length - 1] + stepSec]);
  return out;
}

// logTail follows path (a logs URL without query) as an NDJSON stream
// into a bounded list: the newest MAX_LINES lines stay in the page. Pause
// ends the stream; resume opens it again after the last line seen, so no
// line is lost or shown twice. A stream that ends (the server stopped,
// the network went) opens again after POLL_MS.
const MAX_LINES = 500;
export function logTail({ path, signal, testid, label, filter, empty }) {
  const list = h('ol', { class: 'log-lines', 'aria-label': label, 'data-testid': testid, tabindex: '0' });
  const status = h('p', { class: 'log-status hint', role: 'status' });
  const pause = h('button', { type: 'button', class: 'secondary', 'data-testid': testid + '-pause', 'aria-pressed': 'false', text: 'Pause' });
  const placeholder = h('li', { class: 'log-empty hint', text: empty });
  list.append(placeholder);
  let lastID = 0;
  let paused = false;
  let ctl = null;
  let retry = null;

  const start = () => {
    if (signal.aborted || paused) return;
    const c = new AbortController();
    ctl = c;
    const stop = () => c.abort();
    signal.addEventListener('abort', stop, { once: true });
    const q = lastID ? 'after=' + lastID : 'since=1h';
    status.textContent = 'Following…';
    status.classList.remove('form-error');
    (async () => {
      try {
        for await (const line of follow(path + '?follow=1&' + q, c.signal)) {
          if (line.id) lastID = Math.max(lastID, line.id);
          append(line);
        }
        if (!c.signal.aborted) throw new Error('the stream ended');
      } catch (err) {
        if (c.signal.aborted || signal.aborted) return;
        status.textContent = 'Log stream interrupted (' + (err.message || err) + '); reconnecting in 5 s.';
        status.classList.add('form-error');
        retry = setTimeout(start, POLL_MS);
      } finally {
        signal.removeEventListener('abort', stop);
      }
    })();
  };

  const append = (line) => {
    if (placeholder.isConnected) placeholder.remove();
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
    const li = logLine(line);
    li.hidden = !!filter && !filter(line);
    list.append(li);
    while (list.childElementCount > MAX_LINES) list.firstElementChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  };

  pause.addEventListener('click', () => {
    paused = !paused;
    pause.setAttribute('aria-pressed', String(paused));
    pause.textContent = paused ? 'Resume' : 'Pause';
    if (paused) {
      clearTimeout(retry);
      if (ctl) ctl.abort();
      status.textContent = 'Paused: new lines are not shown until you resume.';
      status.classList.remove('form-error');
    } else {
      start();
    }
  });
  signal.addEventListener('abort', () => clearTimeout(retry), { once: true });
  start();
  return {
    el: h('div', { class: 'log-tail' }, h('div', { class: 'log-bar' }, pause, status), list),
    // refilter shows the lines filter keeps and hides the others (the
    // filter changed).
    refilter() {
      for (const li of list.querySelectorAll('li.log-line')) li.hidden = !!filter && !filter(li.line);
      list.scrollTop = list.scrollHeight;
    },
  };
}

// logLine renders one stratus.LogLine: time, stream, request or
// instance, text.
function logLine(l) {
  // A request ID's tail tells requests apart (its head is a timestamp).
  const who = l.requestId || l.instance || '';
  const short = l.requestId ? '…' + l.requestId.slice(-8) : who;
  const li = h('li', { class: 'log-line stream-' + (l.stream || 'stdout') },
    h('time', { class: 'log-time', datetime: l.time, text: fmt.time(l.time) }),
    h('span', { class: 'log-who', text: short, title: who || null }),
    h('span', { class: 'log-text', text: l.text }));
  li.line = l;
  return li;
}

// logList renders a finished list of lines (an invocation's).
export function logList(lines, testid, empty) {
  if (!lines.length) return h('div', { 'data-testid': testid }, emptyState(empty[0], empty[1]));
  return h('ol', { class: 'log-lines log-static', 'data-testid': testid, tabindex: '0', 'aria-label': 'Log lines' }, lines.map(logLine));
}

// usageCard shows the usage, cost, energy and carbon of one workload
// over a range (GET /v1/usage?since=RANGE&by=KIND).
export function usageCard(kind, name, emptyHint) {
  const s = slot('slot-usage', 'usage');
  const el = card('Usage, cost, energy and carbon', s.el);
  let seq = 0;
  return {
    el,
    async refresh(range, signal) {
      const mine = ++seq; // a slower answer for an older range is dropped
      try {
        const rep = await api('GET', '/v1/usage', { query: { since: range, by: kind }, signal });
        if (mine !== seq) return;
        const row = (rep.rows || []).find((r) => r.key === name);
        const src = h('p', { class: 'hint', text: `Region ${rep.region}, grid ${fmt.num(rep.gridIntensity)} gCO2e/kWh, prices of ${rep.pricesAsOf}.` });
        if (!row || !row.requests) {
          s.show(h('div', {}, emptyState(`No usage recorded in the last ${range}`, emptyHint), src));
          return;
        }
        s.show(h('div', {},
          kv([
            ['Requests', fmt.num(row.requests)],
            ['Billed duration', fmt.ms(row.billedDurationMs)],
            ['GB-seconds', fmt.num(row.gbSeconds)],
            ['vCPU-seconds', fmt.num(row.vcpuSeconds)],
            ['CPU time used', fmt.dur(row.cpuSeconds)],
            ['Cost', figure('usd', row.costUSD)],
            ['Energy', figure('wh', row.energyWh)],
            ['Carbon', figure('gco2', row.carbonG)],
          ]), src));
      } catch (err) {
        if (!isAbort(err, signal) && mine === seq) s.error(err, () => this.refresh(range, signal));
      }
    },
  };
}

const MODEL_NAMES = {
  'function': 'Function (scale to zero)',
  'function-min-instances': 'Function with warm instances',
  'service': 'Service (replicas)',
  'aws-lambda': 'AWS Lambda (reference)',
  'cloud-run': 'Cloud Run (reference)',
};

// adviceCard shows GET /v1/advice/NAME?window=RANGE: the recommendation
// and its reason, the traffic it read, every option's monthly numbers and
// the break-even chart.
export function adviceCard(name, todo) {
  const s = slot('slot-advice', 'advice');
  const el = card('Advice: function or service?', s.el);
  let chart = null;
  let seq = 0;
  return {
    el,
    async refresh(range, signal) {
      const mine = ++seq; // a slower answer for an older range is dropped
      let a;
      try {
        a = await api('GET', '/v1/advice/' + enc(name), { query: { window: range }, signal });
      } catch (err) {
        if (!isAbort(err, signal) && mine === seq) s.error(err, () => this.refresh(range, signal));
        return;
      }
      if (mine !== seq) return;
      const tr = a.traffic || {};
      const box = h('div', { class: 'chart-box chart-breakeven', 'data-testid': 'chart-breakeven' });
      const be = breakEven(a);
      s.show(h('div', { class: 'advice' },
        h('p', { class: 'advice-rec' }, h('strong', { text: 'Recommended: ' + (MODEL_NAMES[a.recommended] || a.recommended) + '. ' }), a.reason),
        kv([
          ['Window', `last ${range}`],
          ['Requests', fmt.num(tr.requests)],
          ['Mean rate', rate(tr.meanRps)],
          ['Peak rate (busiest minute)', rate(tr.peakRps)],
          ['Busy minutes', fmt.pct(tr.activeShare)],
          ['Duration mean / p99', fmt.ms(tr.meanDurationMs) + ' / ' + fmt.ms(tr.p99DurationMs)],
          ['Cold starts per request', fmt.pct(tr.coldStartRate)],
          ['Break-even rate', a.breakEvenRps ? rate(a.breakEvenRps) : 'none between 0.001 and 100,000 req/s'],
          ['Monthly saving', figure('usd', a.monthlySavingUSD)],
        ]),
        scroller(table({
          caption: 'Ways of running it, a month at this traffic',
          rowKey: (o) => o.model,
          columns: [
            { key: 'model', label: 'Option', render: (o) => (MODEL_NAMES[o.model] || o.model) + (o.model === a.recommended ? ' ★' : '') },
            { key: 'monthlyCostUSD', label: 'Cost / month', numeric: true, render: (o) => figure('usd', o.monthlyCostUSD) },
            { key: 'monthlyEnergyWh', label: 'Energy / month', numeric: true, render: (o) => figure('wh', o.monthlyEnergyWh) },
            { key: 'monthlyCarbonG', label: 'CO2e / month', numeric: true, render: (o) => figure('gco2', o.monthlyCarbonG) },
            { key: 'p99Ms', label: 'p99', numeric: true, render: (o) => fmt.ms(o.p99Ms) },
            { key: 'coldStartRate', label: 'Cold starts', numeric: true, render: (o) => fmt.pct(o.coldStartRate) },
            { key: 'note', label: 'Note', render: (o) => o.note || '' },
          ],
          rows: a.options || [],
          empty: emptyState('No options', 'The server gave no options.'),
        })),
        h('figure', { class: 'chart-card' },
          h('figcaption', { text: 'Break-even: monthly cost against mean requests/s' }),
          be ? box : emptyState('No break-even chart yet', `It needs traffic in the window: ${todo}, or pick a longer range.`),
          be ? h('p', { class: 'hint', text: be.caption }) : null)));
      if (chart) chart.destroy();
      chart = null;
      if (be) {
        chart = xyChart(box, { title: 'Monthly cost', xLabel: 'mean requests/s', yLabel: 'USD a month', series: be.series }, be.xs, be.ys);
        box.dataset.breakEven = String(a.breakEvenRps || 0);
      }
    },
    destroy() {
      seq++; // an answer still on its way draws nothing
      if (chart) chart.destroy();
      chart = null;
    },
  };
}

// breakEven derives the break-even chart's lines from the advice's own
// numbers (no other source), or null when the window had no traffic.
// The advice prices each option by replaying the window's minutes at a
// rate; the chart draws straight lines through the points that replay
// gave:
//
//   - function: its monthly cost is per request and per GB-second, so at
//     the window's shape it is proportional to the rate: fn(x) = fnCost
//     × x / meanRps (through the function option's cost at meanRps).
//   - service: its cost at meanRps is the service option's cost, and at
//     the break-even rate it equals the function's, fn(breakEvenRps).
//     Between and beyond, replicas are added (or dropped) in proportion
//     to the rate, so its line goes through those two points, never
//     below the cost of one replica (svcCost / minInstances).
//   - with no break-even (breakEvenRps 0: the costs do not cross between
//     0.001 and 100,000 req/s) the service's line is flat at its cost.
//   - the break-even rate and the window's mean rate are vertical lines
//     (each x twice, 0 then the top); the x axis spans 0 to 2.5 × the
//     larger of the two rates.
export function breakEven(a) {
  const tr = a.traffic || {};
  const opts = a.options || [];
  const fn = opts.find((o) => o.model === 'function');
  const svc = opts.find((o) => o.model === 'service');
  if (!fn || !svc || !(tr.meanRps > 0) || !(fn.monthlyCostUSD > 0)) return null;
  const mean = tr.meanRps;
  const be = a.breakEvenRps > 0 ? a.breakEvenRps : 0;
  const fnAt = (x) => (fn.monthlyCostUSD * x) / mean;
  const floor = svc.monthlyCostUSD / Math.max(1, svc.minInstances || 1);
  const slope = be && be !== mean ? (fnAt(be) - svc.monthlyCostUSD) / (be - mean) : 0;
  const svcAt = (x) => Math.max(floor, svc.monthlyCostUSD + slope * (x - mean));
  const right = 2.5 * Math.max(be, mean);
  const xs = [];
  for (let i = 0; i <= 60; i++) xs.push((right * i) / 60);
  const marks = be ? [mean, be] : [mean];
  for (const m of marks) xs.push(m, m);
  xs.sort((p, q) => p - q);
  const fnY = xs.map(fnAt);
  const svcY = xs.map(svcAt);
  const top = Math.max(...fnY, ...svcY);
  const vline = (at) => {
    let seen = 0;
    return xs.map((x) => (x === at ? (seen++ === 0 ? 0 : top) : null));
  };
  const ys = [fnY, svcY, vline(mean)];
  const series = [{ label: 'Function' }, { label: 'Service' }, { label: 'This window', dash: [2, 4] }];
  if (be) {
    ys.push(vline(be));
    series.push({ label: 'Break-even', dash: [8, 4] });
  }
  const caption = (be
    ? `Break-even at ${rate(be)} (about ${fmt.usd(fnAt(be))} a month): below it a function costs less, above it a service.`
    : 'The costs do not cross between 0.001 and 100,000 req/s.')
    + ` This window: ${rate(mean)}, ${fmt.usd(fn.monthlyCostUSD)} a month as a function, ${fmt.usd(svc.monthlyCostUSD)} as a service;`
    + ' the lines are drawn through the advice\'s figures at these rates.';
  return { xs, ys, series, caption };
}

// envTable is a workload's environment as a table (values in full);
// hint says how to set some when there are none.
export function envTable(env, hint) {
  const e = env || {};
  return scroller(table({
    caption: 'Environment',
    columns: [{ key: 'k', label: 'Name', render: (k) => h('code', { text: k }) }, { key: 'v', label: 'Value', render: (k) => h('code', { class: 'env-value', text: e[k] }) }],
    rows: Object.keys(e).sort(),
    empty: emptyState('No environment variables', hint),
  }));
}

// workloadPage makes the frame both workload pages share: the status
// line under the name (testid statusId), the page's tools (range picker,
// actions), its body, the card shown instead while the workload is not
// there (here: presence), and mount(main), which puts the header
// (Overview / label, the name) and all of it in main.
export function workloadPage({ kind, label, name, statusId }) {
  const status = h('p', { class: 'sub', 'data-testid': statusId, text: 'Loading…' });
  // A workload that is not there (removed, or a wrong link) shows only
  // that, until it is there again.
  const gone = h('section', { class: 'card', 'data-testid': 'not-found', hidden: true });
  const body = h('div', { class: 'page-body' });
  const tools = h('div', { class: 'page-tools' });
  return {
    status, body, tools,
    here: presence({ gone, body, tools, status }),
    mount(main) {
      main.replaceChildren(h('div', { class: `page page-${kind}` },
        h('header', { class: 'page-head' },
          h('div', { class: 'page-title' },
            h('p', { class: 'crumb' }, h('a', { href: '#/', text: 'Overview' }), ` / ${label}`),
            h('h1', { text: name }),
            status),
          tools),
        gone,
        body));
    },
  };
}

// presence shows a workload's page or, while the workload is not there
// (removed, or a wrong link), only a card that says so: present() and
// missing(kind, name, deploy) switch between them; deploy is the command
// that makes it.
function presence({ gone, body, tools, status }) {
  return {
    present() {
      gone.hidden = true;
      body.hidden = false;
      tools.hidden = false;
    },
    missing(kind, name, deploy) {
      gone.replaceChildren(emptyState(`There is no ${kind} ${name}`, h('span', {}, 'It was removed or never deployed. Go back to the ', h('a', { href: '#/', text: 'overview' }), ` or deploy it with ${deploy}.`)));
      gone.hidden = false;
      body.hidden = true;
      tools.hidden = true;
      status.textContent = 'Not found';
    },
  };
}

// destroyOnAbort calls destroy() of each part (charts, tables, cards with
// charts) once signal aborts (the page was left).
export function destroyOnAbort(signal, ...parts) {
  signal.addEventListener('abort', () => {
    for (const p of parts) if (p && p.destroy) p.destroy();
  }, { once: true });
}
