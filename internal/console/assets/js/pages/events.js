// The events page: topics (with a form to publish a test CloudEvent),
// subscriptions with their filters and what they have not yet delivered,
// each function's async queue with its oldest event, and schedules with
// their next firing. It polls every 5 s and updates in place.
//
// Sources: GET /v1/topics, /v1/subscriptions, /v1/functions,
// /v1/schedules; POST /v1/topics/NAME/events (structured CloudEvent,
// Content-Type application/cloudevents+json).

import { api } from '../api.js';
import { h, fmt, emptyState, poll, liveTable, liveSection, offline, offlineBox, noFunctions, command, link, POLL_MS } from '../ui.js';

function target(s) {
  if (s.function) return h('span', null, 'function ', h('a', { href: '#/functions/' + encodeURIComponent(s.function) }, s.function));
  if (s.url) return h('span', { class: 'mono' }, link(s.url));
  return '—';
}

function randomID() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// publishForm is the form that sends one test CloudEvent to a topic.
function publishForm(onPublished) {
  const topic = h('select', { id: 'publish-topic', name: 'topic', 'data-testid': 'publish-topic', required: true });
  const type = h('input', { id: 'publish-type', name: 'type', type: 'text', value: 'com.example.test', required: true, autocomplete: 'off', spellcheck: 'false', 'data-testid': 'publish-type' });
  const source = h('input', { id: 'publish-source', name: 'source', type: 'text', value: '/stratus/console', required: true, autocomplete: 'off', spellcheck: 'false', 'data-testid': 'publish-source' });
  const data = h('textarea', { id: 'publish-data', name: 'data', rows: '3', spellcheck: 'false', 'aria-describedby': 'publish-data-hint', 'data-testid': 'publish-data' });
  data.value = '{"hello": "world"}';
  const submit = h('button', { type: 'submit', class: 'primary', 'data-testid': 'publish-submit' }, 'Publish event');
  const result = h('p', { class: 'publish-result', role: 'status', 'aria-live': 'polite', 'data-testid': 'publish-result' });
  const form = h(
    'form',
    { class: 'publish-form', 'aria-labelledby': 'publish-title', 'data-testid': 'publish-form', novalidate: true },
    h('h3', { id: 'publish-title' }, 'Publish a test event'),
    h(
      'div',
      { class: 'fields' },
      h('div', { class: 'field' }, h('label', { for: 'publish-topic' }, 'Topic'), topic),
      h('div', { class: 'field' }, h('label', { for: 'publish-type' }, 'Type'), type),
      h('div', { class: 'field' }, h('label', { for: 'publish-source' }, 'Source'), source),
    ),
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'publish-data' }, 'Data (JSON)'),
      data,
      h('p', { class: 'hint', id: 'publish-data-hint' }, 'Sent as a CloudEvent 1.0 in structured mode, with a new id and the current time.'),
    ),
    h('div', { class: 'actions' }, submit, result),
  );
  const fail = (el, msg) => {
    result.className = 'publish-result form-error';
    result.textContent = msg;
    if (el) {
      el.setAttribute('aria-invalid', 'true');
      el.focus();
    }
  };
  for (const el of [type, source, data]) el.addEventListener('input', () => el.removeAttribute('aria-invalid'));
  topic.addEventListener('change', () => topic.removeAttribute('aria-invalid'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = topic.value;
    if (!name) return fail(topic, 'Choose a topic.');
    if (!type.value.trim()) return fail(type, 'Give the event a type, for example com.example.test.');
    if (!source.value.trim()) return fail(source, 'Give the event a source, for example /stratus/console.');
    let payload;
    const raw = data.value.trim();
    if (raw === '') payload = undefined;
    else {
      try {
        payload = JSON.parse(raw);
      } catch (ex) {
        return fail(data, `The data is not valid JSON: ${ex.message}`);
      }
    }
    const ev = { specversion: '1.0', id: randomID(), type: type.value.trim(), source: source.value.trim(), time: new Date().toISOString() };
    if (payload !== undefined) {
      ev.datacontenttype = 'application/json';
      ev.data = payload;
    }
    submit.disabled = true;
    result.className = 'publish-result';
    result.textContent = 'Publishing…';
    try {
      const out = await api('POST', '/v1/topics/' + encodeURIComponent(name) + '/events', {
        body: JSON.stringify(ev),
        headers: { 'Content-Type': 'application/cloudevents+json' },
      });
      result.className = 'publish-result form-ok';
      result.textContent = `Published event ${(out && out.ids && out.ids[0]) || ev.id} to ${name}.`;
      onPublished();
    } catch (ex) {
      fail(null, `Not published: ${ex.message}`);
    } finally {
      submit.disabled = false;
    }
  });
  return {
    el: form,
    setTopics(names) {
      const cur = topic.value;
      const want = names.join('\n');
      if (topic.dataset.names === want) return;
      topic.dataset.names = want;
      topic.replaceChildren(...names.map((n) => h('option', { value: n }, n)));
      if (names.includes(cur)) topic.value = cur;
      if (topic.value) topic.removeAttribute('aria-invalid');
      form.hidden = names.length === 0;
    },
    choose(name) {
      topic.value = name;
      topic.removeAttribute('aria-invalid');
      type.focus();
    },
  };
}

export function render(main, params, signal) {
  const updated = h('p', { class: 'updated', 'aria-live': 'off' }, '');
  let refresh = async () => {};
  const form = publishForm(() => refresh());
  form.el.hidden = true;

  const topics = liveTable({
    caption: 'Topics with their subscriptions and pending events',
    rowKey: (t) => t.name,
    rowAttrs: (t) => ({ 'data-testid': 'topic-row-' + t.name }),
    empty: emptyState('No topics yet.', h('span', null, 'Create one: ', command('stratus topic create NAME'), '; then subscribe a function: ', command('stratus subscribe NAME --function FN'), '.')),
    columns: [
      { label: 'Topic', render: (t) => h('span', { class: 'cell-main' }, t.name) },
      { label: 'Subscriptions', numeric: true, render: (t) => fmt.num(t.subscriptions) },
      { label: 'Pending', numeric: true, render: (t) => h('span', { 'data-testid': 'topic-pending-' + t.name }, fmt.num(t.pending)) },
      { label: 'Created', render: (t) => fmt.time(t.createdAt) },
      {
        label: 'Actions',
        update: (td, t, st) => {
          if (!st.b) {
            st.b = h('button', { type: 'button', class: 'secondary', 'data-testid': 'publish-' + t.name, 'aria-label': `Publish a test event to ${t.name}`, onclick: () => form.choose(t.name) }, 'Publish…');
            td.replaceChildren(st.b);
          }
        },
      },
    ],
  });

  const subs = liveTable({
    caption: 'Subscriptions with their filters and pending events',
    rowKey: (s) => s.id,
    rowAttrs: (s) => ({ 'data-testid': 'sub-row-' + s.id }),
    empty: emptyState('No subscriptions yet.', h('span', null, 'Subscribe a function to a topic: ', command('stratus subscribe TOPIC --function FN [--filter type=T]'), '.')),
    columns: [
      { label: 'Topic', render: (s) => s.topic },
      { label: 'Delivers to', render: (s) => target(s) },
      { label: 'Filter', render: (s) => (s.filter ? h('code', null, s.filter) : 'every event') },
      { label: 'Batch', numeric: true, render: (s) => fmt.num(s.batch || 1) },
      { label: 'Pending', numeric: true, render: (s) => fmt.num(s.pending) },
      { label: 'Oldest pending', numeric: true, render: (s) => (s.pending > 0 ? fmt.dur(s.oldestAgeSec) : '—') },
      { label: 'ID', render: (s) => h('span', { class: 'cell-sub mono' }, s.id) },
    ],
  });

  const queues = liveTable({
    caption: 'Asynchronous invocation queue of each function',
    rowKey: (f) => f.name,
    rowAttrs: (f) => ({ 'data-testid': 'queue-row-' + f.name }),
    empty: noFunctions('; invoke it asynchronously with ', command('stratus invoke NAME --async'), '.'),
    columns: [
      { label: 'Function', render: (f) => h('a', { href: '#/functions/' + encodeURIComponent(f.name), class: 'cell-main' }, f.name) },
      { label: 'Queued events', numeric: true, render: (f) => h('span', { 'data-testid': 'queue-depth-' + f.name }, f.async ? fmt.num(f.async.depth) : '—') },
      { label: 'Oldest event', numeric: true, render: (f) => (f.async ? (f.async.depth > 0 ? fmt.dur(f.async.oldestAgeSec) : '—') : '—') },
      { label: 'Retries', numeric: true, render: (f) => (f.config && f.config.maxRetries !== undefined && f.config.maxRetries !== null ? fmt.num(f.config.maxRetries) : '2 (default)') },
      { label: 'On failure', render: (f) => (f.config && f.config.onFailure) || 'none' },
    ],
  });

  const scheds = liveTable({
    caption: 'Schedules with their next firings',
    rowKey: (s) => s.name,
    rowAttrs: (s) => ({ 'data-testid': 'schedule-row-' + s.name }),
    empty: emptyState('No schedules yet.', h('span', null, 'Create one: ', command('stratus schedule create NAME --function FN --cron "0 12 * * ? *"'), '.')),
    columns: [
      { label: 'Schedule', render: (s) => h('span', { class: 'cell-main' }, s.name) },
      { label: 'Function', render: (s) => h('a', { href: '#/functions/' + encodeURIComponent(s.function) }, s.function) },
      { label: 'When', render: (s) => h('code', null, s.expression + (s.timezone ? ` (${s.timezone})` : '')) },
      { label: 'Last fired', render: (s) => (s.lastFiredAt ? fmt.time(s.lastFiredAt) : 'never') },
      { label: 'Next firing', render: (s) => (s.nextFiringAt ? `${fmt.time(s.nextFiringAt)} (${fmt.ago(s.nextFiringAt)})` : 'none') },
    ],
  });

  const topicSec = liveSection('Topics', topics, { extra: form.el });
  const subSec = liveSection('Subscriptions', subs);
  const queueSec = liveSection('Async queues', queues);
  const schedSec = liveSection('Schedules', scheds);

  const offlineErr = h('div', { class: 'section-status' });
  main.replaceChildren(
    h('div', { class: 'page-head' }, h('div', null, h('h1', null, 'Events'), h('p', { class: 'sub' }, 'Topics, subscriptions, async queues and schedules · updates every 5 seconds')), updated),
    offlineErr,
    topicSec.el,
    subSec.el,
    queueSec.el,
    schedSec.el,
  );

  let seq = 0;
  let lastUpdate = '';
  refresh = async () => {
    // A newer refresh (a poll, or one a form asked for) wins.
    const mine = ++seq;
    const q = { signal };
    const [rt, rs, rf, rsch] = await Promise.allSettled([
      api('GET', '/v1/topics', q),
      api('GET', '/v1/subscriptions', q),
      api('GET', '/v1/functions', q),
      api('GET', '/v1/schedules', q),
    ]);
    if (signal.aborted || mine !== seq) return;
    const retry = () => refresh();
    // A server that cannot be reached is said once, above everything,
    // which keeps the figures of the last update.
    if (offline([rt, rs, rf, rsch])) {
      offlineErr.replaceChildren(offlineBox(lastUpdate, retry));
      return;
    }
    offlineErr.replaceChildren();
    const byName = (a, b) => a.name.localeCompare(b.name);
    if (rt.status === 'fulfilled') {
      const list = (rt.value.topics || []).slice().sort(byName);
      topicSec.ok(list);
      form.setTopics(list.map((t) => t.name));
    } else topicSec.fail(rt.reason, retry);
    if (rs.status === 'fulfilled') subSec.ok((rs.value.subscriptions || []).slice().sort((a, b) => a.topic.localeCompare(b.topic) || a.id.localeCompare(b.id)));
    else subSec.fail(rs.reason, retry);
    if (rf.status === 'fulfilled') queueSec.ok((rf.value.functions || []).slice().sort(byName));
    else queueSec.fail(rf.reason, retry);
    if (rsch.status === 'fulfilled') schedSec.ok((rsch.value.schedules || []).slice().sort(byName));
    else schedSec.fail(rsch.reason, retry);
    lastUpdate = fmt.time(new Date());
    updated.textContent = 'Updated ' + lastUpdate;
  };
  poll(() => refresh(), POLL_MS, signal);
}
