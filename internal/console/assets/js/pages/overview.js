// The overview: every function and service with its health and the last
// hour's traffic (sparklines), latency, cost and carbon; topics and
// schedules. It polls the public API every 5 s and updates in place.
//
// Sources: GET /v1/functions, /v1/services, /v1/series?range=1h,
// /v1/usage?since=1h&by=function|service, /v1/topics, /v1/schedules.

import { api } from '../api.js';
import { h, fmt, errorBox, emptyState, poll, liveTable, liveSection, offline, offlineBox, stat, workloadStatus, noFunctions, command, figure, POLL_MS } from '../ui.js';
import { sparkline } from '../chart.js';

function nameLink(href, name, sub) {
  return (td, row, st) => {
    if (!st.a) {
      st.a = h('a', { href, class: 'cell-main' }, name);
      st.sub = h('div', { class: 'cell-sub' });
      td.replaceChildren(st.a, st.sub);
    }
    const s = sub(row);
    if (st.sub.textContent !== s) st.sub.textContent = s;
  };
}

// sparkCell keeps a sparkline and its total in a cell.
function sparkCell(testid, label, values, total, cls) {
  return (td, row, st) => {
    const vals = values(row);
    if (!st.chart) {
      st.box = h('span', { class: 'spark', 'data-testid': testid(row) });
      st.num = h('span', { class: ['spark-num', cls].filter(Boolean).join(' ') });
      td.replaceChildren(h('span', { class: 'spark-cell' }, st.box, st.num));
      const color = cls ? (v) => (v.some((x) => x > 0) ? '--danger' : '--muted') : undefined;
      st.chart = sparkline(st.box, vals, { label: label(row), color });
      st.destroy = () => st.chart.destroy();
    } else {
      st.chart.update(vals);
    }
    const n = total(row);
    const s = fmt.num(n);
    if (st.num.textContent !== s) st.num.textContent = s;
    st.num.classList.toggle('err-count', !!cls && n > 0);
  };
}

function statusCell(text, kind) {
  return (td, row, st) => {
    if (!st.s) {
      st.s = h('span', { class: 'status' });
      td.replaceChildren(st.s);
    }
    const t = text(row);
    if (st.s.textContent !== t) st.s.textContent = t;
    st.s.className = 'status ' + kind(row);
  };
}

export function render(main, params, signal) {
  const updated = h('p', { class: 'updated', 'aria-live': 'off' }, '');
  const stats = {
    functions: stat('Functions', 'stat-functions'),
    services: stat('Services', 'stat-services'),
    invocations: stat('Invocations · 1 h', 'stat-invocations'),
    requests: stat('Requests · 1 h', 'stat-requests'),
    errors: stat('Errors · 1 h', 'stat-errors'),
    cost: stat('Cost · 1 h', 'stat-cost'),
    carbon: stat('Carbon · 1 h', 'stat-carbon'),
  };

  let series = null; // last /v1/series answer (null until it answers)
  // The last good usage rows of each kind (null until its first answer):
  // a failed call keeps them and says so in place.
  const usage = { function: null, service: null };
  const fseries = (name) => (series && series.functions && series.functions[name]) || null;
  const sseries = (name) => (series && series.services && series.services[name]) || null;
  // usageCell is a workload's cost or carbon of the hour: '—' until its
  // kind's usage has answered, 0 for a workload with no usage row.
  const usageCell = (kind, key, unit) => (w) => {
    if (!usage[kind]) return '—';
    const row = usage[kind].get(w.name);
    return figure(unit, row ? row[key] : 0);
  };

  const fnTable = liveTable({
    caption: 'Functions: status, instances, the last hour’s invocations, errors, duration, cost and carbon',
    rowKey: (f) => f.name,
    rowAttrs: (f) => ({ 'data-testid': 'fn-row-' + f.name }),
    empty: noFunctions(),
    columns: [
      { label: 'Function', update: (td, f, st) => nameLink('#/functions/' + encodeURIComponent(f.name), f.name, (r) => `${r.config.runtime || 'image'} · v${r.version} · ${r.config.memoryMB || '—'} MB`)(td, f, st) },
      { label: 'Status', update: statusCell((f) => workloadStatus('function', f)[0], (f) => workloadStatus('function', f)[1]) },
      { label: 'Instances', numeric: true, render: (f) => `${f.instances ? f.instances.live : 0}` + (f.instances && f.instances.busy ? ` (${f.instances.busy} busy)` : '') },
      {
        label: 'Invocations',
        update: sparkCell(
          (f) => 'fn-spark-invocations-' + f.name,
          (f) => `${f.name} invocations per minute over the last hour`,
          (f) => (fseries(f.name) ? fseries(f.name).invocations : []),
          (f) => (fseries(f.name) ? fseries(f.name).summary.invocations : null),
        ),
      },
      {
        label: 'Errors',
        update: sparkCell(
          (f) => 'fn-spark-errors-' + f.name,
          (f) => `${f.name} errors per minute over the last hour`,
          (f) => (fseries(f.name) ? fseries(f.name).errors : []),
          (f) => (fseries(f.name) ? fseries(f.name).summary.errors : null),
          'errors',
        ),
      },
      { label: 'p50', numeric: true, render: (f) => fmt.ms(fseries(f.name) && fseries(f.name).summary.p50Ms) },
      { label: 'p99', numeric: true, render: (f) => fmt.ms(fseries(f.name) && fseries(f.name).summary.p99Ms) },
      { label: 'Cost', numeric: true, render: usageCell('function', 'costUSD', 'usd') },
      { label: 'Carbon', numeric: true, render: usageCell('function', 'carbonG', 'gco2') },
    ],
  });

  const svcTable = liveTable({
    caption: 'Services: status, replicas, the last hour’s requests, errors, latency, cost and carbon',
    rowKey: (s) => s.name,
    rowAttrs: (s) => ({ 'data-testid': 'svc-row-' + s.name }),
    empty: emptyState('No services yet.', h('span', null, 'Deploy one: ', command('stratus service deploy NAME --image REF'), '.')),
    columns: [
      { label: 'Service', update: (td, s, st) => nameLink('#/services/' + encodeURIComponent(s.name), s.name, (r) => `rev ${r.revision} · ${shortImage(r.config && r.config.image)}`)(td, s, st) },
      { label: 'Status', update: statusCell((s) => workloadStatus('service', s)[0], (s) => workloadStatus('service', s)[1]) },
      { label: 'Replicas', numeric: true, render: (s) => `${s.replicas ? s.replicas.ready : 0} / ${s.replicas ? s.replicas.desired : 0}` },
      {
        label: 'Requests',
        update: sparkCell(
          (s) => 'svc-spark-requests-' + s.name,
          (s) => `${s.name} requests per minute over the last hour`,
          (s) => (sseries(s.name) ? sseries(s.name).requests : []),
          (s) => (sseries(s.name) ? sseries(s.name).summary.requests : null),
        ),
      },
      {
        label: 'Errors',
        update: sparkCell(
          (s) => 'svc-spark-errors-' + s.name,
          (s) => `${s.name} 5xx answers per minute over the last hour`,
          (s) => (sseries(s.name) ? sseries(s.name).errors : []),
          (s) => (sseries(s.name) ? sseries(s.name).summary.errors : null),
          'errors',
        ),
      },
      { label: 'p50', numeric: true, render: (s) => fmt.ms(sseries(s.name) && sseries(s.name).summary.p50Ms) },
      { label: 'p99', numeric: true, render: (s) => fmt.ms(sseries(s.name) && sseries(s.name).summary.p99Ms) },
      { label: 'Cost', numeric: true, render: usageCell('service', 'costUSD', 'usd') },
      { label: 'Carbon', numeric: true, render: usageCell('service', 'carbonG', 'gco2') },
    ],
  });

  const topicTable = liveTable({
    caption: 'Topics with their subscriptions and pending events',
    rowKey: (t) => t.name,
    rowAttrs: (t) => ({ 'data-testid': 'ov-topic-row-' + t.name }),
    empty: emptyState('No topics yet.', h('span', null, 'Create one: ', command('stratus topic create NAME'), ', then ', command('stratus subscribe NAME --function FN'), '.')),
    columns: [
      { label: 'Topic', update: (td, t, st) => nameLink('#/events', t.name, () => '')(td, t, st) },
      { label: 'Subscriptions', numeric: true, render: (t) => fmt.num(t.subscriptions) },
      { label: 'Pending', numeric: true, render: (t) => fmt.num(t.pending) },
    ],
  });

  const schedTable = liveTable({
    caption: 'Schedules with their next firing',
    rowKey: (s) => s.name,
    rowAttrs: (s) => ({ 'data-testid': 'ov-schedule-row-' + s.name }),
    empty: emptyState('No schedules yet.', h('span', null, 'Create one: ', command('stratus schedule create NAME --function FN --rate "5 minutes"'), '.')),
    columns: [
      { label: 'Schedule', render: (s) => h('span', null, h('span', { class: 'cell-main' }, s.name), h('div', { class: 'cell-sub' }, '→ ' + s.function)) },
      { label: 'When', render: (s) => h('code', null, s.expression) },
      { label: 'Next firing', render: (s) => (s.nextFiringAt ? `${fmt.time(s.nextFiringAt)} (${fmt.ago(s.nextFiringAt)})` : 'none') },
    ],
  });

  const fnSec = liveSection('Functions', fnTable, { id: 'functions' });
  const svcSec = liveSection('Services', svcTable, { id: 'services' });
  const topicSec = liveSection('Topics', topicTable, { id: 'topics' });
  const schedSec = liveSection('Schedules', schedTable, { id: 'schedules' });
  const seriesErr = h('div', { class: 'section-status' });
  const usageErr = h('div', { class: 'section-status', 'data-testid': 'usage-error' });

  main.replaceChildren(
    h('div', { class: 'page-head' }, h('div', null, h('h1', null, 'Overview'), h('p', { class: 'sub' }, 'The last hour · updates every 5 seconds')), updated),
    seriesErr,
    usageErr,
    h('div', { class: 'stats', role: 'group', 'aria-label': 'Totals of the last hour' }, Object.values(stats).map((s) => s.el)),
    fnSec.el,
    svcSec.el,
    h('div', { class: 'grid' }, topicSec.el, schedSec.el),
  );

  signal.addEventListener('abort', () => {
    fnTable.destroy();
    svcTable.destroy();
  });

  let fns = null;
  let svcs = null;
  let seq = 0;
  let lastUpdate = '';
  const refresh = async () => {
    // A newer refresh (a poll, or one a form asked for) wins.
    const mine = ++seq;
    const q = { signal };
    const [rf, rs, rser, ruf, rus, rt, rsch] = await Promise.allSettled([
      api('GET', '/v1/functions', q),
      api('GET', '/v1/services', q),
      api('GET', '/v1/series', { ...q, query: { range: '1h' } }),
      api('GET', '/v1/usage', { ...q, query: { since: '1h', by: 'function' } }),
      api('GET', '/v1/usage', { ...q, query: { since: '1h', by: 'service' } }),
      api('GET', '/v1/topics', q),
      api('GET', '/v1/schedules', q),
    ]);
    if (signal.aborted || mine !== seq) return;
    const retry = () => refresh();
    // A server that cannot be reached is said once, above everything,
    // which keeps the figures of the last update.
    if (offline([rf, rs, rser, ruf, rus, rt, rsch])) {
      seriesErr.replaceChildren(offlineBox(lastUpdate, retry));
      return;
    }
    if (rser.status === 'fulfilled') {
      series = rser.value;
      seriesErr.replaceChildren();
    } else {
      seriesErr.replaceChildren(errorBox(new Error(`the last hour’s series: ${rser.reason.message}`), retry));
    }
    const usageFails = [];
    for (const [r, kind] of [
      [ruf, 'function'],
      [rus, 'service'],
    ]) {
      if (r.status === 'fulfilled') usage[kind] = new Map((r.value.rows || []).map((row) => [row.key, row]));
      else usageFails.push(`${kind}s: ${r.reason.message}`);
    }
    if (usageFails.length) {
      const kept = usage.function || usage.service ? ' The figures shown are the last ones that loaded.' : '';
      usageErr.replaceChildren(errorBox(new Error(`the last hour’s cost and carbon (${usageFails.join('; ')}).${kept}`), retry));
    } else usageErr.replaceChildren();
    if (rf.status === 'fulfilled') {
      fns = (rf.value.functions || []).slice().sort((a, b) => a.name.localeCompare(b.name));
      fnSec.ok(fns);
    } else fnSec.fail(rf.reason, retry);
    if (rs.status === 'fulfilled') {
      svcs = (rs.value.services || []).slice().sort((a, b) => a.name.localeCompare(b.name));
      svcSec.ok(svcs);
    } else svcSec.fail(rs.reason, retry);
    if (rt.status === 'fulfilled') topicSec.ok((rt.value.topics || []).slice().sort((a, b) => a.name.localeCompare(b.name)));
    else topicSec.fail(rt.reason, retry);
    if (rsch.status === 'fulfilled') schedSec.ok((rsch.value.schedules || []).slice().sort((a, b) => a.name.localeCompare(b.name)));
    else schedSec.fail(rsch.reason, retry);

    stats.functions.set(fns ? fmt.num(fns.length) : '—');
    stats.services.set(svcs ? fmt.num(svcs.length) : '—');
    if (series) {
      let inv = 0,
        req = 0,
        errs = 0;
      for (const f of Object.values(series.functions || {})) {
        inv += f.summary.invocations || 0;
        errs += f.summary.errors || 0;
      }
      for (const s of Object.values(series.services || {})) {
        req += s.summary.requests || 0;
        errs += s.summary.errors || 0;
      }
      stats.invocations.set(fmt.num(inv));
      stats.requests.set(fmt.num(req));
      stats.errors.set(fmt.num(errs), errs > 0);
    }
    if (usage.function && usage.service) {
      let cost = 0,
        carbon = 0;
      for (const m of [usage.function, usage.service]) {
        for (const row of m.values()) {
          cost += row.costUSD || 0;
          carbon += row.carbonG || 0;
        }
      }
      stats.cost.set(fmt.usd(cost), false, fmt.exact('usd', cost));
      stats.carbon.set(fmt.gco2(carbon), false, fmt.exact('gco2', carbon));
    }
    lastUpdate = fmt.time(new Date());
    updated.textContent = 'Updated ' + lastUpdate;
  };
  poll(refresh, POLL_MS, signal);
}

function shortImage(ref) {
  if (!ref) return '—';
  const at = ref.indexOf('@sha256:');
  if (at >= 0) return ref.slice(0, at) + '@' + ref.slice(at + 8, at + 20);
  return ref.length > 48 ? ref.slice(0, 45) + '…' : ref;
}
