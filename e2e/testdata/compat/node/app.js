// The Express 5 app of the compatibility suite (e2e/compat_test.go). It
// runs unchanged behind serverless-http (sls.js), behind
// @codegenie/serverless-express (sx.js) and directly (server.js).
'use strict';

const crypto = require('node:crypto');
const express = require('express');

const app = express();

// query gives every query parameter as a list, in order.
function query(req) {
  const out = {};
  for (const [k, v] of new URLSearchParams(req.originalUrl.split('?')[1] || '')) {
    (out[k] = out[k] || []).push(v);
  }
  return out;
}

// cookies parses the Cookie header in order.
function cookies(req) {
  const out = [];
  for (const part of (req.get('cookie') || '').split(';')) {
    const p = part.trim();
    if (p) out.push(p);
  }
  return out;
}

function echo(req, res) {
  res.append('X-Multi', 'one');
  res.append('X-Multi', 'two');
  res.set('X-App', 'express');
  res.json({ method: req.method, path: req.path, query: query(req), cookies: cookies(req) });
}

app.get('/echo', echo);
app.get('/echo/{*rest}', echo);

app.get('/users/:id/items/:item', (req, res) => {
  res.json({ id: req.params.id, item: req.params.item });
});

app.get('/cookies', (req, res) => {
  res.cookie('session', 'abc123', { path: '/', httpOnly: true });
  res.cookie('theme', 'dark', { path: '/', expires: new Date(Date.UTC(2030, 0, 1)) });
  res.append('Set-Cookie', 'plain=1');
  res.json({ cookies: cookies(req) });
});

app.post('/binary', express.raw({ type: '*/*', limit: '8mb' }), (req, res) => {
  const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  res.set('X-Body-Sha256', crypto.createHash('sha256').update(body).digest('hex'));
  res.type('application/octet-stream').send(body);
});

app.post('/json', express.json({ limit: '8mb' }), (req, res) => {
  res.status(201).json({ got: req.body, keys: Object.keys(req.body || {}).length });
});

app.get('/large', (req, res) => {
  const n = Math.min(parseInt(req.query.n, 10) || 0, 4 << 20);
  const line = 'the quick brown fox jumps over the lazy dog 0123456789\n';
  res.type('text/plain').send(line.repeat(Math.ceil(n / line.length)).slice(0, n));
});

app.get('/redirect', (req, res) => res.redirect('/elsewhere'));

// A redirect that honours X-Forwarded-Prefix, as proxy-aware frameworks do.
app.get('/redirect-prefixed', (req, res) => res.redirect((req.get('x-forwarded-prefix') || '') + '/elsewhere'));

app.get('/elsewhere', (req, res) => res.type('text/plain').send('elsewhere\n'));

app.get('/error', () => {
  const err = new Error('conflict here');
  err.status = 409;
  throw err;
});

module.exports = app;
