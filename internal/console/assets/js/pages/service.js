// The service page (#/services/NAME): its revisions and traffic, replicas
// over time against the autoscaler's desired count with the panic
// windows shaded, request rate and latency, restarts and OOM kills, the
// replicas, their logs, usage and carbon, and the advice. It polls every
// 5 s until the page is left.
import { api } from '../api.js';
import { h, fmt, card, kv, table, emptyState, errorBox, poll, liveTable, scroller, stat, workloadStatus, link, POLL_MS } from '../ui.js';
import {
  savedRange, isAbort, enc, slot, picker, charts, panicBands, logTail, usageCard, adviceCard, envTable, workloadPage, destroyOnAbort,
} from './workload.js';

const CHARTS = [
  {
    testid: 'chart-replicas', title: 'Replicas and desired (panic windows shaded)', unit: 'replicas', bands: true,
    series: [
      { label: 'Ready replicas', key: 'replicas', kind: 'step' },
      { label: 'Desired', key: 'desired', kind: 'step', dash: [6, 4] },
      { label: 'Autoscaler decision', key: 'autoscalerDesired', kind: 'step', dash: [2, 3] },
    ],
  },
  { testid: 'chart-requests', title: 'Request rate and 5xx rate', unit: 'req/s', series: [{ label: 'Requests', key: 'requests', kind: 'bars', perSec: true }, { label: '5xx', key: 'errors', kind: 'bars', perSec: true }] },
  { testid: 'chart-latency', title: 'Latency p50 / p99', unit: 'ms', series: [{ label: 'p50', key: 'latencyP50Ms' }, { label: 'p99', key: 'latencyP99Ms', dash: [6, 4] }] },
  { testid: 'chart-inflight', title: 'Requests in flight (max)', unit: 'count', series: [{ label: 'In flight', key: 'inflight', kind: 'step' }] },
  { testid: 'chart-restarts', title: 'Restarts and OOM kills', unit: 'count', series: [{ label: 'Restarts', key: 'restarts', kind: 'bars' }, { label: 'OOM kills', key: 'oomKills', kind: 'bars' }] },
];

export function render(main, params, signal) {
  const name = params.name;
  const base = '/v1/services/' + enc(name);
  let range = savedRange();

  const page = workloadPage({ kind: 'service', label: 'Services', name, statusId: 'svc-status' });
  const { status, body, tools, here } = page;
  let shownSig = '';
  const stats = {
    ready: stat('Ready replicas', 'replicas-now'),
    desired: stat('Desired replicas', 'replicas-desired'),
    draining: stat('Draining', 'replicas-draining'),
    waiting: stat('Requests waiting', 'requests-waiting'),
    restarts: stat('Restarts (serving revision)', 'svc-restarts'),
  };
  const lastError = h('div', { class: 'svc-last-error', 'data-testid': 'svc-last-error', 'aria-live': 'polite' });
  const chartSet = charts(CHARTS);
  const traffic = slot('slot-traffic', 'traffic');
  const history = revisionsTable(name);
  const historyErr = h('div', { class: 'slot-error' });
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
  page.mount(main);
  body.append(
    h('div', { class: 'stats', role: 'group', 'aria-label': 'Replicas now' }, Object.values(stats).map((s) => s.el)),
    lastError,
    card('Activity', chartSet.el),
    h('div', { class: 'page-grid' },
      card('Traffic', traffic.el),
      card('Configuration', config.el),
      h('div', { class: 'col-wide' }, card('Revisions', historyErr, scroller(history.el))),
      h('div', { class: 'col-wide' }, card('Replicas', replicaErr, scroller(replicas.el))),
      h('div', { class: 'col-wide' }, card('Replica logs',
        h('div', { class: 'field field-inline' }, h('label', { for: choose.id, text: 'Show lines of' }), choose),
        tail.el)),
      h('div', { class: 'col-wide' }, usage.el),
      h('div', { class: 'col-wide' }, advice.el)));

  function showService(sv) {
    const c = sv.config || {};
    stats.ready.set(String(sv.replicas.ready));
    stats.desired.set(String(sv.replicas.desired));
    stats.draining.set(String(sv.replicas.draining));
    stats.waiting.set(String(sv.replicas.waiting));
    stats.restarts.set(String(sv.restarts), sv.restarts > 0);
    replicas.update(sv.detail || []);
    replicaChoices(sv.detail || []);
    // The rest is drawn again only when it changed, so a poll keeps the
    // scroll and focus inside it.
    const sig = JSON.stringify([sv.status, sv.revision, sv.config, sv.traffic, sv.lastError, sv.url, sv.hostUrl, sv.updatedAt]);
    if (sig === shownSig) return;
    shownSig = sig;
    const [text, cls] = workloadStatus('service', sv);
    status.replaceChildren(
      h('span', { class: 'status ' + cls, text, title: sv.status }), ' · ',
      `revision ${sv.revisionName}`, ' · ', h('code', { text: c.image || '—' }),
      ' · ', link(sv.url));
    lastError.replaceChildren(sv.lastError ? h('p', { class: 'notice notice-bad' }, h('strong', { text: 'Last error: ' }), sv.lastError) : '');

    traffic.show(scroller(table({
      caption: 'Traffic targets: the share of requests each revision takes',
      rowKey: (t) => t.revisionName + (t.tag || ''),
      columns: [
        { key: 'revisionName', label: 'Revision', render: (t) => h('span', {}, t.revisionName, t.latest ? h('span', { class: 'pill accent', text: 'latest' }) : null) },
        { key: 'percent', label: 'Traffic', numeric: true, render: (t) => trafficBar(t.percent) },
        { key: 'tag', label: 'Tag', render: (t) => (t.tag ? h('span', {}, h('code', { text: t.tag }), ' ', t.url ? link(t.url) : null) : '—') },
        { key: 'ready', label: 'Ready replicas', numeric: true, render: (t) => String(t.ready) },
      ],
      rows: sv.traffic || [],
      empty: emptyState('No traffic targets', `Deploy a revision with stratus service deploy ${name} --image REF.`),
    })));

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
      envTable(c.env, `Set them with stratus service deploy ${name} --env KEY=VALUE.`)));
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
      here.present();
      replicaErr.replaceChildren();
      showService(sv);
    } catch (err) {
      if (isAbort(err, signal)) return;
      if (err.status === 404) {
        here.missing('service', name, `stratus service deploy ${name} --image REF`);
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

  async function loadRevisions() {
    try {
      const r = await api('GET', base + '/revisions', { signal });
      history.update(r.revisions || []);
      historyErr.replaceChildren();
    } catch (err) {
      if (!isAbort(err, signal) && err.status !== 404) historyErr.replaceChildren(errorBox(err, () => loadRevisions()));
    }
  }

  let tick = 0;
  poll(async () => {
    const slow = tick++ % 6 === 0; // usage and advice: every 30 s
    await Promise.all([
      loadService(),
      loadSeries(),
      loadRevisions(),
      slow ? usage.refresh(range, signal) : null,
      slow ? advice.refresh(range, signal) : null,
    ]);
  }, POLL_MS, signal);
  destroyOnAbort(signal, chartSet, advice, replicas, history);
}

// revisionsTable lists every revision of the service, newest first, and
// the share of requests each takes now.
function revisionsTable(name) {
  const lt = liveTable({
    caption: 'Revisions of ' + name + ', newest first, with the share of requests each serves',
    rowKey: (r) => r.number,
    rowAttrs: (r) => ({ 'data-testid': 'revision-row-' + r.number }),
    columns: [
      { key: 'name', label: 'Revision', render: (r) => h('span', {}, h('code', { text: r.name }), r.latest ? h('span', { class: 'pill accent', text: 'latest' }) : null) },
      { key: 'image', label: 'Image', render: (r) => h('code', { text: r.image || '—', title: r.imageDigest || null }) },
      { key: 'createdAt', label: 'Created', render: (r) => fmt.time(r.createdAt) },
      { key: 'percent', label: 'Serves', numeric: true, render: (r) => (r.percent > 0 ? trafficBar(r.percent) : h('span', { class: 'hint', text: 'no traffic' })) },
      { key: 'tags', label: 'Tags', render: (r) => (r.tags && r.tags.length ? r.tags.join(', ') : '—') },
      { key: 'ready', label: 'Ready replicas', numeric: true, render: (r) => String(r.ready || 0) },
    ],
    empty: emptyState('No revisions', `Deploy one with stratus service deploy ${name} --image REF.`),
  });
  lt.el.dataset.testid = 'revisions-table';
  return lt;
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
