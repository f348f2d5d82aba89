// The sign-in view: one field for the server's token, POSTed as JSON to
// /v1/session. The server answers with an HttpOnly session cookie; the
// token itself is never kept by the page (no URL, no storage), and the
// field is cleared whatever the answer.

import { api } from '../api.js';
import { h } from '../ui.js';

export function render(main, params = {}, signal) {
  const err = h('p', { class: 'form-error', id: 'signin-error', role: 'alert', 'data-testid': 'signin-error', hidden: true });
  const token = h('input', {
    id: 'signin-token',
    name: 'token',
    type: 'password',
    autocomplete: 'current-password',
    spellcheck: 'false',
    autocapitalize: 'off',
    required: true,
    'aria-describedby': 'signin-hint signin-error',
    'data-testid': 'signin-token',
  });
  const submit = h('button', { type: 'submit', class: 'primary', 'data-testid': 'signin-submit' }, 'Sign in');
  const form = h(
    'form',
    { class: 'signin-form', 'data-testid': 'signin-form', novalidate: true, 'aria-labelledby': 'signin-title' },
    h('div', { class: 'field' }, h('label', { for: 'signin-token' }, 'Token'), token),
    h(
      'p',
      { class: 'hint', id: 'signin-hint' },
      'The server’s token: the file ',
      h('code', null, 'token'),
      ' in its data directory (',
      h('code', null, '.stratus/token'),
      ' by default), or the value of ',
      h('code', null, '--token'),
      ' / ',
      h('code', null, 'STRATUS_TOKEN'),
      '.',
    ),
    err,
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const value = token.value.trim();
    err.hidden = true;
    if (!value) {
      err.textContent = 'Enter the token.';
      err.hidden = false;
      token.setAttribute('aria-invalid', 'true');
      token.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      await api('POST', '/v1/session', { body: { token: value }, signal });
      token.value = '';
      if (params.onSignedIn) params.onSignedIn();
    } catch (ex) {
      if (ex && ex.name === 'AbortError') return;
      token.value = '';
      token.setAttribute('aria-invalid', 'true');
      err.textContent = ex.status === 401 ? 'That token is not the server’s token. Check it and try again.' : `Sign-in did not work: ${ex.message}`;
      err.hidden = false;
      token.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Sign in';
    }
  });
  token.addEventListener('input', () => token.removeAttribute('aria-invalid'));

  main.replaceChildren(
    h(
      'div',
      { class: 'signin' },
      h(
        'section',
        { class: 'card signin-card' },
        h('div', { class: 'brand signin-brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'Stratus'),
        h('h1', { id: 'signin-title' }, 'Sign in'),
        params.message ? h('p', { class: 'notice', role: 'status' }, params.message) : null,
        form,
      ),
    ),
  );
  token.focus();
}
