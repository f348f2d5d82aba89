// The service page (#/services/NAME): its revisions and traffic, replicas
// over time against the autoscaler's desired count with the panic
// windows shaded, request rate and latency, restarts and OOM kills, the
// replicas, their logs, usage and carbon, and the advice. It polls every
// 5 s until the page is left.
import { api } from '../api.js';
import { h, fmt, card, kv, table, emptyState, errorBox, poll, liveTable, scroller } from '../ui.js';
import {
  POLL_MS, savedRange, isAbort, enc, slot, picker, charts, panicBands, logTail, usageCard, adviceCard,
} from './workload.js';

const CHARTS = [
  {
    testid: 'chart-replicas', title: 'Replicas and desired (panic windows shaded)', unit: 'replicas', bands: true,
    series: [{ label: 'Ready replicas', key: 'replicas', kind: 'step' }, { label: 'Desired', key: 'desired', kind: 'step', dash: [6, 4] }],
  },
  { testid: 'chart-requests', title: 'Request rate and 5xx rate', unit: 'req/s', series: [{ label: 'Requests', key: 'requests', kind: 'bars', perSec: true }, { label: '5xx', key: 'errors', kind: 'bars', perSec: true }] },
  { testid: 'chart-latency', title: 'Latency p50 / p99', unit: 'ms', series: [{ label: 'p50', key: 'latencyP50Ms' }, { label: 'p99', key: 'latencyP99Ms', dash: [6, 4] }] },
  { testid: 'chart-inflight', title: 'Requests in flight (max)', unit: 'count', series: [{ label: 'In flight', key: 'inflight', kind: 'step' }] },
  { testid: 'chart-restarts', title: 'Restarts and OOM kills', unit: 'count', series: [{ label: 'Restarts', key: 'restarts', kind: 'bars' }, { label: 'OOM kills', key: 'oomKills', kind: 'bars' }] },
];

const STATUS_CLASS = { Ready: 'ok', Starting: 'warn', ScaledToZero: 'idle', CrashLoopBackOff: 'bad' };

export function render(main, params, signal) {
  const name = params.name;
  const base = '/v1/services/' + enc(name);
  let range = savedRange();

  const status = h('p', { class: 'sub', 'data-testid': 'svc-status', text: 'Loading…' });
  let shownSig = '';
  // A workload that is not there (removed, or a wrong link) shows only
  // that, until it is there again.
  const gone = h('section', { class: 'card', 'data-testid': 'not-found', hidden: true });
  const body = h('div', { class: 'page-body' });
  const tools = h('div', { class: 'page-tools' });
  const stat = (label, testid) => {
    const v = h('p', { class: 'stat-value', 'data-testid': testid, text: '—' });
    return { el: h('div', { class: 'stat' }, h('p', { class: 'stat-label', text: label }), v), v };
  };
  const stats = {
    ready: stat('Ready replicas', 'replicas-now'),
    desired: stat('Desired by the autoscaler', 'replicas-desired'),
    draining: stat('Draining', 'replicas-draining'),
    waiting: stat('Requests waiting', 'requests-waiting'),
    restarts: stat('Restarts (serving revision)', 'svc-restarts'),
  };
  const lastError = h('div', { class: 'svc-last-error', 'data-testid': 'svc-last-error', 'aria-live': 'polite' });
  const chartSet = charts(CHARTS);
  const traffic = slot('slot-traffic', 'traffic');
  const config = slot('slot-config', 'svc-config');
  const replicas = replicasTable(name);
  const replicaErr = h('div', { class: 'slot-error' });
  const usage = usageCard('service', name, `Usage is recorded minute by minute: send requests to /svc/${name} and its cost, energy and carbon show here within a minute or two.`);
  const advice = adviceCard(name, `send requests to /svc/${name}`);

  let only = '';
  const choose = h('select', { 'data-testid': 'replica-filter' }, h('option', { value: '', text: 'All replicas' }));
  choose.id = 'replica-filter-' + Math.random().toString(36).slice(2);
  choose.addEventListener('change', () => {
    only = choose.value;
    tail.refilter();
  });
  const tail = logTail({
    path: base + '/logs', signal, testid: 'svc-log-tail', label: 'Live log lines of the replicas of ' + name,
    filter: (l) => !only || l.instance === only,
    empty: `No log lines in the last hour: send requests to /svc/${name}, or its replicas print nothing.`,
  });

  const rangeEl = picker(range, (r) => {
    range = r;
    loadSeries();
    usage.refresh(range, signal);
    advice.refresh(range, signal);
  });

  tools.append(rangeEl);
  main.replaceChildren(h('div', { class: 'page page-service' },
    h('header', { class: 'page-head' },
      h('div', { class: 'page-title' },
        h('p', { class: 'crumb' }, h('a', { href: '#/', text: 'Overview' }), ' / Services'),
        h('h1', { text: name }),
        status),
      tools),
    gone,
    body));
  body.append(
    h('div', { class: 'stats', role: 'group', 'aria-label': 'Replicas now' }, Object.values(stats).map((s) => s.el)),
    lastError,
    card('Activity', chartSet.el),
    h('div', { class: 'page-grid' },
      card('Revisions and traffic', traffic.el),
      card('Configuration', config.el),
      h('div', { class: 'col-wide' }, card('Replicas', replicaErr, scroller(replicas.el))),
      h('div', { class: 'col-wide' }, card('Replica logs',
        h('div', { class: 'field field-inline' }, h('label', { for: choose.id, text: 'Show lines of' }), choose),
        tail.el)),
      h('div', { class: 'col-wide' }, usage.el),
      h('div', { class: 'col-wide' }, advice.el)));

  function showService(sv) {
    const c = sv.config || {};
    stats.ready.v.textContent = String(sv.replicas.ready);
    stats.desired.v.textContent = String(sv.replicas.desired);
    stats.draining.v.textContent = String(sv.replicas.draining);
    stats.waiting.v.textContent = String(sv.replicas.waiting);
    stats.restarts.v.textContent = String(sv.restarts);
    replicas.update(sv.detail || []);
    replicaChoices(sv.detail || []);
    // The rest is drawn again only when it changed, so a poll keeps the
    // scroll and focus inside it.
    const sig = JSON.stringify([sv.status, sv.revision, sv.config, sv.traffic, sv.lastError, sv.url, sv.hostUrl, sv.updatedAt]);
    if (sig === shownSig) return;
    shownSig = sig;
    const cls = STATUS_CLASS[sv.status] || 'warn';
    status.replaceChildren(
      h('span', { class: 'status ' + cls, text: sv.status }), ' · ',
      `revision ${sv.revisionName}`, ' · ', h('code', { text: c.image || '—' }),
      ' · ', h('a', { href: sv.url, text: sv.url, rel: 'noopener' }));
    lastError.replaceChildren(sv.lastError ? h('p', { class: 'notice notice-bad' }, h('strong', { text: 'Last error: ' }), sv.lastError) : '');

    traffic.show(scroller(table({
      caption: 'Traffic targets: the share of requests each revision takes',
      rowKey: (t) => t.revisionName + (t.tag || ''),
      columns: [
        { key: 'revisionName', label: 'Revision', render: (t) => h('span', {}, t.revisionName, t.latest ? h('span', { class: 'pill accent', text: 'latest' }) : null) },
        { key: 'percent', label: 'Traffic', numeric: true, render: (t) => trafficBar(t.percent) },
        { key: 'tag', label: 'Tag', render: (t) => (t.tag ? h('span', {}, h('code', { text: t.tag }), ' ', t.url ? h('a', { href: t.url, text: t.url, rel: 'noopener' }) : null) : '—') },
        { key: 'ready', label: 'Ready replicas', numeric: true, render: (t) => String(t.ready) },
      ],
      rows: sv.traffic || [],
      empty: emptyState('No traffic targets', `Deploy a revision with stratus service deploy ${name} --image REF.`),
    })));

    const env = Object.keys(c.env || {}).sort();
    config.show(h('div', {},
      kv([
        ['Image', h('code', { text: c.image || '—' })],
        ['Digest', h('code', { text: (sv.imageDigest || '').slice(0, 19) || '—', title: sv.imageDigest || '' })],
        ['Port', String(c.port || '—')],
        ['Scale', `${c.minScale} to ${c.maxScale} replicas`],
        ['Concurrency', `${c.concurrency} requests a replica`],
        ['Size', `${fmt.num(c.cpu)} vCPU, ${fmt.num(c.memoryMB)} MB`],
        ['Auth', c.auth || '—'],
        ['Host route', sv.hostUrl || '—'],
        ['Updated', fmt.time(sv.updatedAt)],
      ]),
      scroller(table({
        caption: 'Environment',
        columns: [{ key: 'k', label: 'Name', render: (k) => h('code', { text: k }) }, { key: 'v', label: 'Value', render: (k) => h('code', { class: 'env-value', text: c.env[k] }) }],
        rows: env,
        empty: emptyState('No environment variables', `Set them with stratus service deploy ${name} --env KEY=VALUE.`),
      }))));
  }

  // replicaChoices keeps the log filter's choices to the replicas listed
  // (and the one chosen, marked gone once it is).
  function replicaChoices(detail) {
    const ids = detail.map((r) => r.id);
    const have = [...choose.options].slice(1).map((o) => o.value);
    if (ids.join() !== have.join()) {
      const keep = choose.value;
      choose.replaceChildren(h('option', { value: '', text: 'All replicas' }), ...ids.map((id) => h('option', { value: id, text: id })));
      if (keep && !ids.includes(keep)) choose.append(h('option', { value: keep, text: keep + ' (gone)' }));
      choose.value = keep;
    }
  }

  async function loadService() {
    try {
      const sv = await api('GET', base, { signal });
      gone.hidden = true;
      body.hidden = false;
      tools.hidden = false;
      replicaErr.replaceChildren();
      showService(sv);
    } catch (err) {
      if (isAbort(err, signal)) return;
      if (err.status === 404) {
        gone.hidden = false;
        body.hidden = true;
        tools.hidden = true;
        gone.replaceChildren(emptyState(`There is no service ${name}`, h('span', {}, 'It was removed or never deployed. Go back to the ', h('a', { href: '#/', text: 'overview' }), ` or deploy it with stratus service deploy ${name} --image REF.`)));
        status.textContent = 'Not found';
        return;
      }
      status.textContent = 'Could not load the service: ' + err.message;
      replicaErr.replaceChildren(errorBox(err, () => loadService()));
    }
  }

  async function loadSeries() {
    const want = range;
    try {
      const s = await api('GET', base + '/series', { query: { range: want }, signal });
      if (want === range) chartSet.update(s, (a) => panicBands(a.t, a.series && a.series.panic, a.stepSec));
    } catch (err) {
      if (!isAbort(err, signal)) chartSet.error(err);
    }
  }

  let tick = 0;
  poll(async () => {
    const slow = tick++ % 6 === 0; // usage and advice: every 30 s
    await Promise.all([
      loadService(),
      loadSeries(),
      slow ? usage.refresh(range, signal) : null,
      slow ? advice.refresh(range, signal) : null,
    ]);
  }, POLL_MS, signal);
  signal.addEventListener('abort', () => {
    chartSet.destroy();
    replicas.destroy();
  }, { once: true });
}

// trafficBar is a percent with a bar drawn in CSS (its width set through
// the CSSOM, as the CSP forbids style attributes).
function trafficBar(pct) {
  const fill = h('span', { class: 'bar-fill' });
  fill.style.width = Math.max(0, Math.min(100, pct)) + '%';
  return h('span', { class: 'bar', 'aria-label': pct + ' percent' }, h('span', { class: 'bar-track' }, fill), h('span', { class: 'bar-num', text: pct + ' %' }));
}

// replicasTable lists the replicas, updated in place by id.
function replicasTable(name) {
  const lt = liveTable({
    caption: 'Replicas of ' + name,
    rowKey: (r) => r.id,
    rowAttrs: (r) => ({ 'data-testid': 'replica-row-' + r.id }),
    columns: [
      { key: 'id', label: 'Replica', render: (r) => h('code', { text: r.id }) },
      { key: 'revision', label: 'Revision', numeric: true, render: (r) => String(r.revision) },
      { key: 'state', label: 'State', render: (r) => h('span', { class: 'status ' + replicaClass(r.state), text: r.state }) },
      { key: 'inflight', label: 'In flight', numeric: true, render: (r) => String(r.inflight) },
      { key: 'restarts', label: 'Restarts', numeric: true, render: (r) => String(r.restarts) },
      { key: 'lastError', label: 'Last error', class: 'wrap', render: (r) => r.lastError || '—' },
    ],
    empty: emptyState('No replicas running', `It has scaled to zero or is starting: send a request to /svc/${name} to start one.`),
  });
  lt.el.dataset.testid = 'replicas-table';
  return lt;
}

function replicaClass(state) {
  switch (state) {
    case 'ready':
      return 'ok';
    case 'backoff':
      return 'bad';
    case 'stopping':
      return 'idle';
    default:
      return 'warn';
  }
}
