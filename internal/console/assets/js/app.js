// app.js: the console's shell and router. It asks the server whether the
// browser holds a session (GET /v1/session) and shows either the sign-in
// view or the app: a top bar (Overview, Events, Sign out) and one page at
// a time in <main>, chosen by the URL's hash:
//
//   #/                 overview
//   #/events           topics, subscriptions, async queues, schedules
//   #/functions/NAME   a function (pages/function.js)
//   #/services/NAME    a service (pages/service.js)
//
// Pages are ES modules loaded on demand (import()), each exporting
// render(main, params, signal); the shell aborts signal when the user
// leaves the page, which stops its polling.

import { api } from './api.js';
import { h, errorBox } from './ui.js';

const main = document.getElementById('main');
const topbar = document.getElementById('topbar');
const nav = document.getElementById('nav');
const navToggle = document.getElementById('nav-toggle');
const signoutBtn = document.getElementById('signout');
const serverInfo = document.getElementById('server-info');

let current = null; // AbortController of the page on screen
let signedIn = false;
let firstPage = true;

const routes = [
  { re: /^\/?$/, page: 'overview', nav: 'overview', title: () => 'Overview' },
  { re: /^\/events\/?$/, page: 'events', nav: 'events', title: () => 'Events' },
  { re: /^\/functions\/([^/]+)\/?$/, page: 'function', nav: 'overview', title: (p) => p.name, params: (m) => ({ name: decodeURIComponent(m[1]) }) },
  { re: /^\/services\/([^/]+)\/?$/, page: 'service', nav: 'overview', title: (p) => p.name, params: (m) => ({ name: decodeURIComponent(m[1]) }) },
];

function route() {
  let path = location.hash.replace(/^#/, '');
  if (path === '' || path === 'main') path = '/';
  for (const r of routes) {
    const m = r.re.exec(path);
    if (m) return { ...r, params: r.params ? r.params(m) : {} };
  }
  return null;
}

function stopPage() {
  if (current) current.abort();
  current = null;
}

function setNav(active) {
  for (const a of nav.querySelectorAll('a[data-route]')) {
    if (a.dataset.route === active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function closeMenu() {
  navToggle.setAttribute('aria-expanded', 'false');
  nav.classList.remove('open');
}

async function showPage() {
  if (!signedIn) return;
  stopPage();
  closeMenu();
  const r = route();
  const ctl = new AbortController();
  current = ctl;
  main.replaceChildren();
  main.removeAttribute('aria-busy');
  if (!r) {
    setNav(null);
    document.title = 'Not found · Stratus';
    main.append(
      h('h1', null, 'Page not found'),
      errorBox(new Error(`There is no console page at ${location.hash}.`)),
      h('p', null, h('a', { href: '#/' }, 'Go to the overview')),
    );
    return;
  }
  setNav(r.nav);
  document.title = r.title(r.params) + ' · Stratus';
  let mod;
  try {
    mod = await import(`./pages/${r.page}.js`);
  } catch (err) {
    if (ctl.signal.aborted) return;
    main.replaceChildren(
      h('h1', null, r.title(r.params)),
      errorBox(new Error(`this page's code did not load (${r.page}.js): ${err.message}`), () => showPage()),
    );
    return;
  }
  if (ctl.signal.aborted) return;
  try {
    await mod.render(main, r.params, ctl.signal);
  } catch (err) {
    if (ctl.signal.aborted || (err && err.name === 'AbortError')) return;
    main.replaceChildren(h('h1', null, r.title(r.params)), errorBox(err, () => showPage()));
  }
  if (!firstPage && !ctl.signal.aborted) {
    const h1 = main.querySelector('h1');
    (h1 || main).setAttribute('tabindex', '-1');
    (h1 || main).focus({ preventScroll: false });
  }
  firstPage = false;
}

async function showSignIn(message) {
  signedIn = false;
  stopPage();
  topbar.hidden = true;
  serverInfo.textContent = '';
  document.title = 'Sign in · Stratus';
  const ctl = new AbortController();
  current = ctl;
  main.replaceChildren();
  try {
    const mod = await import('./pages/signin.js');
    if (ctl.signal.aborted) return;
    await mod.render(main, { message, onSignedIn: () => enter() }, ctl.signal);
  } catch (err) {
    main.replaceChildren(h('h1', null, 'Sign in'), errorBox(err, () => showSignIn(message)));
  }
}

async function loadInfo() {
  try {
    const info = await api('GET', '/v1/info');
    const v = info.version ? String(info.version) : '';
    serverInfo.textContent = [info.region && `region ${info.region}`, v && (/^\d/.test(v) ? 'v' + v : v)].filter(Boolean).join(' · ');
  } catch {
    serverInfo.textContent = '';
  }
}

function enter() {
  signedIn = true;
  firstPage = true;
  topbar.hidden = false;
  loadInfo();
  showPage();
}

let bootTimer = null;

// boot asks whether the browser holds a session. When the server cannot
// be reached it says so and asks again every 5 s (or at once on Retry).
async function boot() {
  clearTimeout(bootTimer);
  try {
    await api('GET', '/v1/session');
    enter();
  } catch (err) {
    if (err.status === 401) {
      showSignIn();
      return;
    }
    topbar.hidden = true;
    main.replaceChildren(h('h1', null, 'Stratus console'), errorBox(err, () => boot()));
    bootTimer = setTimeout(boot, 5000);
  }
}

// signoutErr is the error box of the last failed sign-out, replaced by
// the next one.
let signoutErr = null;

async function signOut() {
  signoutBtn.disabled = true;
  if (signoutErr) signoutErr.remove();
  signoutErr = null;
  try {
    await api('DELETE', '/v1/session');
    showSignIn('You are signed out.');
  } catch (err) {
    if (err.status === 401) {
      showSignIn('You are signed out.');
    } else {
      signoutErr = errorBox(new Error(`sign out: ${err.message}`));
      main.prepend(signoutErr);
    }
  } finally {
    signoutBtn.disabled = false;
  }
}

window.addEventListener('stratus:unauthorized', () => {
  if (signedIn) showSignIn('Your session has ended. Sign in again.');
});
window.addEventListener('hashchange', () => {
  if (signedIn) showPage();
});
signoutBtn.addEventListener('click', signOut);
navToggle.addEventListener('click', () => {
  const open = navToggle.getAttribute('aria-expanded') !== 'true';
  navToggle.setAttribute('aria-expanded', String(open));
  nav.classList.toggle('open', open);
});
nav.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && nav.classList.contains('open')) {
    closeMenu();
    navToggle.focus();
  }
});
// The skip link moves the focus to <main> without touching the hash (the
// hash is the router's).
document.getElementById('skip-link').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

boot();
