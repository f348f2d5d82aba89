// api.js: the console's only way to the server. Every call goes to the
// public /v1 API on the console's own origin, authenticated by the session
// cookie (credentials: 'same-origin') and marked with X-Stratus-CSRF: 1,
// which the server requires on every cookie-authenticated write.

// ApiError is a failed API call: status is the HTTP status (0 when the
// server could not be reached), body the parsed error body (or null).
export class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
  }
}

function url(path, query) {
  if (!query) return path;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? path + (path.includes('?') ? '&' : '?') + s : path;
}

function request(method, path, { body, query, headers, signal } = {}) {
  const h = new Headers(headers || {});
  h.set('X-Stratus-CSRF', '1');
  if (!h.has('Accept')) h.set('Accept', 'application/json');
  let payload;
  if (body !== undefined && body !== null) {
    if (typeof body === 'string' || body instanceof Blob || body instanceof ArrayBuffer) {
      payload = body;
    } else {
      payload = JSON.stringify(body);
      if (!h.has('Content-Type')) h.set('Content-Type', 'application/json');
    }
  }
  return fetch(url(path, query), {
    method,
    headers: h,
    body: payload,
    signal,
    credentials: 'same-origin',
    cache: 'no-store',
    redirect: 'error',
  }).catch((err) => {
    if (err && err.name === 'AbortError') throw err;
    throw new ApiError(`cannot reach the Stratus server (${method} ${path}): ${err && err.message ? err.message : err}`, 0, null);
  });
}

function unauthorized() {
  window.dispatchEvent(new CustomEvent('stratus:unauthorized'));
}

function errorMessage(status, text, body) {
  if (body && typeof body === 'object') {
    const m = body.message || body.error || body.errorMessage;
    if (m) return String(m);
  }
  const t = (text || '').trim();
  if (t && t.length < 300) return t;
  return `the server answered ${status}`;
}

function parse(text) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

// api calls the API and answers its parsed JSON (null for an empty
// answer). A non-2xx answer throws ApiError; a 401 also tells the shell
// (window event stratus:unauthorized) so it shows the sign-in view.
export async function api(method, path, opts = {}) {
  const res = await request(method, path, opts);
  const text = await res.text();
  const body = parse(text);
  if (!res.ok) {
    if (res.status === 401) unauthorized();
    throw new ApiError(errorMessage(res.status, text, body), res.status, body);
  }
  if (res.status === 204 || !text) return null;
  if (body === null) throw new ApiError(`${method} ${path}: the answer is not JSON`, res.status, null);
  return body;
}

// apiRaw calls the API and answers {status, headers, text} whatever the
// status (a 401 still tells the shell).
export async function apiRaw(method, path, opts = {}) {
  const res = await request(method, path, opts);
  const text = await res.text();
  if (res.status === 401) unauthorized();
  return { status: res.status, headers: res.headers, text };
}

// follow yields the objects of a streaming NDJSON answer (for example
// logs with follow=1) until the stream ends or signal aborts.
export async function* follow(path, signal) {
  const res = await request('GET', path, { signal, headers: { Accept: 'application/x-ndjson' } });
  if (!res.ok) {
    const text = await res.text();
    if (res.status === 401) unauthorized();
    throw new ApiError(errorMessage(res.status, text, parse(text)), res.status, parse(text));
  }
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (!line) continue;
        const v = parse(line);
        if (v !== null) yield v;
      }
    }
    const rest = buf.trim();
    if (rest) {
      const v = parse(rest);
      if (v !== null) yield v;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
