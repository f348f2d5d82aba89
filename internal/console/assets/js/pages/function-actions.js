// The function page's actions: invoke with a JSON payload, the
// configuration with its form (PATCH /v1/functions/NAME), delete.
import { api, apiRaw } from '../api.js';
import { h, fmt, card, kv, table, emptyState, errorBox, confirmDialog, scroller, link } from '../ui.js';
import { isAbort, slot, logList, envTable } from './workload.js';

let uid = 0;
const id = (p) => `${p}-${++uid}`;

// field is a labelled control with its hint and in-place error.
function field(label, control, hint) {
  control.id = control.id || id('f');
  const err = h('p', { class: 'field-error', id: control.id + '-err', role: 'alert', hidden: true });
  const hintEl = hint ? h('p', { class: 'hint', id: control.id + '-hint', text: hint }) : null;
  control.setAttribute('aria-describedby', [hintEl ? hintEl.id : '', err.id].join(' ').trim());
  return {
    el: h('div', { class: 'field' }, h('label', { for: control.id, text: label }), control, hintEl, err),
    error(msg) {
      err.textContent = msg || '';
      err.hidden = !msg;
      if (msg) control.setAttribute('aria-invalid', 'true');
      else control.removeAttribute('aria-invalid');
    },
  };
}

// invokeCard: a JSON payload (checked before anything is sent), the
// invocation type, and the answer: status, function error, duration,
// cold start, the result body and that invocation's log lines.
export function invokeCard(name, base, signal, onDone) {
  const payload = h('textarea', { class: 'code-input', rows: '6', spellcheck: 'false', 'data-testid': 'invoke-payload' });
  payload.value = '{}';
  const type = h('select', { 'data-testid': 'invoke-type' },
    h('option', { value: 'RequestResponse', text: 'Synchronous (wait for the result)' }),
    h('option', { value: 'Event', text: 'Asynchronous (queue it)' }));
  const fPayload = field('Payload (JSON)', payload, 'Any JSON value; the function receives it as its event.');
  const fType = field('Invocation type', type);
  const submit = h('button', { type: 'submit', class: 'primary', 'data-testid': 'invoke-submit', text: 'Invoke' });
  const result = h('div', { class: 'invoke-result', 'data-testid': 'invoke-result', 'aria-live': 'polite' });
  const logs = h('div', { class: 'invoke-logs', 'data-testid': 'invoke-logs-box' });

  const send = async (ev) => {
    ev.preventDefault();
    let text = payload.value.trim();
    try {
      JSON.parse(text);
      fPayload.error('');
    } catch (err) {
      fPayload.error('Not valid JSON: ' + err.message + '. Nothing was sent.');
      payload.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Invoking…';
    result.replaceChildren(h('p', { class: 'hint', text: 'Waiting for the function…' }));
    delete result.dataset.requestId;
    logs.replaceChildren();
    try {
      const r = await apiRaw('POST', base + '/invoke', { body: text, headers: { 'Content-Type': 'application/json', 'X-Invocation-Type': type.value }, signal });
      showResult(r);
    } catch (err) {
      if (!isAbort(err, signal)) result.replaceChildren(errorBox(err));
    } finally {
      submit.disabled = false;
      submit.textContent = 'Invoke';
      onDone();
    }
  };

  const showResult = async (r) => {
    const reqID = r.headers.get('X-Amzn-Requestid');
    const fnErr = r.headers.get('X-Amz-Function-Error');
    const ok = r.status >= 200 && r.status < 300 && !fnErr;
    let body = r.text || '';
    let parsed = null;
    try {
      parsed = JSON.parse(body);
      body = JSON.stringify(parsed, null, 2);
    } catch {
      // Not JSON: shown as it came.
    }
    if (r.status === 202) {
      const rid = (parsed && parsed.requestId) || reqID;
      if (rid) result.dataset.requestId = rid;
      result.replaceChildren(h('p', { class: 'badge badge-ok', 'data-testid': 'invoke-status', text: '202 queued' }),
        kv([['Request ID', rid || '—']]),
        h('p', { class: 'hint', text: 'It runs from the queue: find it in the table above once it has run, and open it for its attempts and destination.' }));
      return;
    }
    if (reqID) result.dataset.requestId = reqID;
    const cold = r.headers.get('X-Stratus-Cold-Start');
    const init = r.headers.get('X-Stratus-Init-Duration-Ms');
    result.replaceChildren(
      h('p', {},
        h('span', { class: 'badge ' + (ok ? 'badge-ok' : 'badge-bad'), 'data-testid': 'invoke-status', text: `${r.status} ${ok ? 'OK' : fnErr ? 'function error' : 'error'}` })),
      kv([
        ['Request ID', reqID || '—'],
        ['Function error', fnErr || 'none'],
        ['Duration', fmt.ms(numOrNull(r.headers.get('X-Stratus-Duration-Ms')))],
        ['Cold start', cold === 'true' || cold === '1' ? 'yes' + (init ? `, init ${fmt.ms(Number(init))}` : '') : 'no'],
        ['Version', r.headers.get('X-Amz-Executed-Version') || '—'],
      ]),
      h('h3', { text: fnErr || !ok ? 'Error' : 'Result' }),
      h('pre', { class: 'code-block', 'data-testid': 'invoke-body', tabindex: '0', text: body || '(empty)' }));
    if (reqID) showLogs(reqID);
  };

  // showLogs fetches the invocation's lines; the platform's REPORT line
  // may land a moment after the answer, so it asks again (at most 5
  // times, 600 ms apart) until it is there.
  const showLogs = async (reqID) => {
    logs.replaceChildren(h('h3', { text: 'Log lines' }), h('p', { class: 'hint', text: 'Loading…' }));
    for (let i = 0; i < 5 && !signal.aborted; i++) {
      try {
        const r = await api('GET', base + '/logs', { query: { request: reqID }, signal });
        const lines = r.lines || [];
        const done = lines.some((l) => /^REPORT\b/.test(l.text) || l.stream === 'report');
        if (done || i === 4) {
          logs.replaceChildren(h('h3', { text: 'Log lines' }), logList(lines, 'invoke-logs', ['No log lines', 'The invocation printed nothing.']));
          return;
        }
      } catch (err) {
        if (!isAbort(err, signal)) logs.replaceChildren(h('h3', { text: 'Log lines' }), errorBox(err, () => showLogs(reqID)));
        return;
      }
      await new Promise((res) => setTimeout(res, 600));
    }
  };

  const form = h('form', { class: 'invoke-form', 'aria-label': 'Invoke ' + name, onsubmit: send }, fPayload.el, fType.el, h('div', { class: 'actions' }, submit));
  return { el: card('Invoke', form, result, logs) };
}

function numOrNull(s) {
  return s == null || s === '' ? null : Number(s);
}

// parseEnv reads KEY=VALUE lines (blank lines skipped) into an object,
// or throws naming the line that is wrong.
export function parseEnv(text) {
  const env = {};
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '') return;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`line ${i + 1}: want KEY=VALUE`);
    const k = line.slice(0, eq).trim();
    if (Object.prototype.hasOwnProperty.call(env, k)) throw new Error(`line ${i + 1}: ${k} is set twice`);
    env[k] = line.slice(eq + 1);
  });
  return env;
}

function envText(env) {
  return Object.keys(env || {}).sort().map((k) => `${k}=${env[k]}`).join('\n');
}

// configCard shows the configuration, versions and aliases, and the form
// that changes memory, timeout, max concurrency and env with a JSON merge
// patch of only the fields that changed.
export function configCard(name, base, signal, onSaved) {
  const view = slot('slot-config', 'config');
  const versions = slot('slot-versions', 'versions');
  const memory = h('input', { type: 'number', 'data-testid': 'config-memory' });
  const timeout = h('input', { type: 'number', 'data-testid': 'config-timeout' });
  const conc = h('input', { type: 'number', 'data-testid': 'config-concurrency' });
  const env = h('textarea', { class: 'code-input', 'data-testid': 'config-env' });
  Object.assign(memory, { min: 128, max: 10240, step: 1, required: true });
  Object.assign(timeout, { min: 1, max: 900, step: 1, required: true });
  Object.assign(conc, { min: 0, step: 1, required: true });
  Object.assign(env, { rows: 4, spellcheck: false });
  const fields = {
    memoryMB: field('Memory (MB)', memory, '128 to 10,240 MB.'),
    timeoutSec: field('Timeout (seconds)', timeout, '1 to 900 s.'),
    maxConcurrency: field('Max concurrency', conc, 'Instances at once; 0 means the server default.'),
    env: field('Environment', env, 'One KEY=VALUE a line; a line you remove removes its variable.'),
  };
  const formErr = h('div', { class: 'form-error', 'data-testid': 'config-error', 'aria-live': 'assertive' });
  const saved = h('p', { class: 'hint', 'data-testid': 'config-saved', role: 'status' });
  const save = h('button', { type: 'submit', class: 'primary', 'data-testid': 'config-save', text: 'Save changes' });
  const reset = h('button', { type: 'button', class: 'secondary', text: 'Undo edits' });
  const stale = h('div', { class: 'notice stale-notice', 'data-testid': 'config-stale', role: 'alert', hidden: true });
  let current = null;
  // filled is the function the form's values came from: a save sends
  // only what the operator changed from those, and not at all once
  // another version has been deployed since (say, from the CLI).
  let filled = null;
  let dirty = false;
  let shownSig = '';

  const fill = (fn) => {
    const c = fn.config || {};
    memory.value = String(c.memoryMB);
    timeout.value = String(c.timeoutSec);
    conc.value = String(c.maxConcurrency || 0);
    env.value = envText(c.env);
    filled = fn;
    dirty = false;
    stale.hidden = true;
    stale.replaceChildren();
  };

  const submit = async (ev) => {
    ev.preventDefault();
    formErr.replaceChildren();
    saved.textContent = '';
    for (const f of Object.values(fields)) f.error('');
    const c = (filled && filled.config) || {};
    const patch = {};
    let bad = false;
    const num = (key, input) => {
      const v = Number(input.value);
      if (input.value.trim() === '' || !Number.isInteger(v) || v < 0) {
        fields[key].error('Enter a whole number.');
        bad = true;
      } else if (v !== (c[key] || 0)) patch[key] = v;
    };
    num('memoryMB', memory);
    num('timeoutSec', timeout);
    num('maxConcurrency', conc);
    try {
      const e = parseEnv(env.value);
      if (envText(e) !== envText(c.env)) {
        // A merge patch: each changed key, and null for each key the
        // form no longer holds (the server deletes those).
        const diff = {};
        for (const [k, v] of Object.entries(e)) if (!c.env || c.env[k] !== v) diff[k] = v;
        for (const k of Object.keys(c.env || {})) if (!(k in e)) diff[k] = null;
        patch.env = diff;
      }
    } catch (err) {
      fields.env.error(err.message);
      bad = true;
    }
    if (bad) return;
    if (!Object.keys(patch).length) {
      saved.textContent = 'Nothing changed.';
      return;
    }
    if (current && filled && current.version !== filled.version) {
      // Sending the form now would put back what the other change took
      // away: say so, and let the operator start again from the new one.
      stale.replaceChildren(
        h('p', { text: `Version ${current.version} was deployed after this form was filled (from version ${filled.version}), for example from the CLI. Nothing was sent: reload the form with its values, then make your change again.` }),
        h('button', { type: 'button', class: 'secondary', 'data-testid': 'config-reload', text: 'Reload the form', onclick: () => { fill(current); memory.focus(); } }));
      stale.hidden = false;
      return;
    }
    save.disabled = true;
    try {
      const fn = await api('PATCH', base, { body: patch, headers: { 'Content-Type': 'application/merge-patch+json' }, signal });
      current = fn;
      fill(fn);
      saved.textContent = `Saved: version ${fn.version}.`;
      onSaved(fn);
    } catch (err) {
      if (isAbort(err, signal)) return;
      // Put the server's message under the field it names, else above
      // the buttons.
      const msg = err.message || String(err);
      const key = Object.keys(fields).find((k) => msg.toLowerCase().includes(k.toLowerCase())
        || (k === 'memoryMB' && /memory/i.test(msg)) || (k === 'timeoutSec' && /timeout/i.test(msg)) || (k === 'maxConcurrency' && /concurrency/i.test(msg)));
      if (key) fields[key].error(msg);
      formErr.replaceChildren(errorBox(err));
    } finally {
      save.disabled = false;
    }
  };

  const form = h('form', { class: 'config-form', 'data-testid': 'config-form', 'aria-label': 'Change the configuration', onsubmit: submit, oninput: () => { dirty = true; } },
    h('div', { class: 'fields' }, fields.memoryMB.el, fields.timeoutSec.el, fields.maxConcurrency.el),
    fields.env.el, stale, formErr,
    h('div', { class: 'actions' }, save, reset, saved));
  // The form checks its values itself and shows the server's refusals
  // under the fields, rather than the browser's own bubbles.
  form.noValidate = true;
  reset.addEventListener('click', () => {
    if (current) fill(current);
    for (const f of Object.values(fields)) f.error('');
    formErr.replaceChildren();
    saved.textContent = '';
  });

  return {
    el: card('Configuration', view.el, h('h3', { text: 'Change it' }), form, h('h3', { text: 'Versions and aliases' }), versions.el),
    // show displays fn (GET /v1/functions/NAME) and fills the form
    // unless the operator is editing it.
    show(fn) {
      current = fn;
      if (!dirty && !form.contains(document.activeElement)) fill(fn);
      // Drawn again only when it changed, so a poll keeps the scroll
      // and focus inside it.
      const sig = JSON.stringify([fn.version, fn.config, fn.updatedAt, fn.codeSha256, fn.url]);
      if (sig === shownSig) return;
      shownSig = sig;
      const c = fn.config || {};
      view.show(h('div', {},
        kv([
          ['Runtime', c.runtime || '—'], ['Image', c.image || null], ['Handler', c.handler || '—'],
          ['Memory', `${fmt.num(c.memoryMB)} MB`], ['Timeout', fmt.dur(c.timeoutSec)],
          ['Max concurrency', c.maxConcurrency ? fmt.num(c.maxConcurrency) : 'server default'],
          ['Min instances', fmt.num(c.minInstances || 0)], ['Idle timeout', c.idleTimeout || 'default'],
          ['Auth of /fn/' + name, c.auth || '—'], ['Retries', c.maxRetries == null ? 'default' : fmt.num(c.maxRetries)],
          ['On success', c.onSuccess || 'none'], ['On failure', c.onFailure || 'none'],
          ['Version', String(fn.version)], ['Code', `${(fn.codeSha256 || '').slice(0, 12)} (${fmt.bytes(fn.codeSize)})`],
          ['Updated', fmt.time(fn.updatedAt)], ['URL', fn.url ? link(fn.url) : '—'],
        ].filter((p) => p[1] !== null)),
        envTable(c.env, 'Add KEY=VALUE lines in the form below.')));
    },
    async refreshVersions() {
      try {
        const [vs, as] = await Promise.all([api('GET', base + '/versions', { signal }), api('GET', base + '/aliases', { signal })]);
        versions.show(h('div', { class: 'two-tables' },
          scroller(table({
            caption: 'Versions',
            columns: [
              { key: 'version', label: 'Version' },
              { key: 'snapshot', label: 'Deploy', numeric: true },
              { key: 'createdAt', label: 'Created', render: (v) => fmt.time(v.createdAt) },
              { key: 'description', label: 'Description', render: (v) => v.description || '' },
            ],
            rows: vs.versions || [],
            empty: emptyState('No versions', `Publish one with stratus publish ${name}.`),
          })),
          scroller(table({
            caption: 'Aliases',
            columns: [
              { key: 'name', label: 'Alias' },
              { key: 'version', label: 'Version' },
              { key: 'weights', label: 'Weights', render: (a) => Object.entries(a.weights || {}).map(([v, w]) => `${v}: ${fmt.pct(w)}`).join(', ') || '—' },
            ],
            rows: as.aliases || [],
            empty: emptyState('No aliases', `Create one with stratus alias set ${name} ALIAS VERSION.`),
          }))));
      } catch (err) {
        if (!isAbort(err, signal)) versions.error(err, () => this.refreshVersions());
      }
    },
  };
}

// deleteButton asks for a confirmation, deletes the function and goes
// back to the overview; an error is shown beside the button.
export function deleteButton(name, base, signal) {
  const err = h('div', { class: 'inline-error', 'aria-live': 'assertive' });
  const btn = h('button', { type: 'button', class: 'danger', 'data-testid': 'delete', text: 'Delete…' });
  btn.addEventListener('click', async () => {
    err.replaceChildren();
    const ok = await confirmDialog(`Delete the function ${name}? Its versions, aliases and queued events go with it; this cannot be undone.`, 'Delete ' + name, signal);
    if (!ok) return;
    btn.disabled = true;
    try {
      await api('DELETE', base);
      location.hash = '#/';
    } catch (e) {
      err.replaceChildren(errorBox(e));
      btn.disabled = false;
    }
  });
  return h('div', { class: 'delete-box' }, btn, err);
}
