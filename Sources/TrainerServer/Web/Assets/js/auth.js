// Log-in and sign-up forms: post JSON, then go where the visitor was headed.
import { api, showError } from './common.js';

const form = document.getElementById('auth-form');
const errorBox = document.getElementById('form-error');

/**
 * Only pages of this site: the browser's own URL parser decides (it drops tabs and newlines, so
 * `/%09/evil.com` is `//evil.com`), and anything of another origin goes to the datasets.
 */
function nextPath() {
  const next = new URLSearchParams(location.search).get('next') || '';
  if (!next.startsWith('/')) return '/datasets';
  const target = new URL(next, location.origin);
  return target.origin === location.origin ? target.pathname + target.search + target.hash : '/datasets';
}

if (form) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(errorBox, null);
    const body = {};
    for (const [name, value] of new FormData(form)) if (value !== '') body[name] = value;
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await api('POST', form.dataset.endpoint, body);
      location.assign(nextPath());
    } catch (error) {
      showError(errorBox, error);
      button.disabled = false;
    }
  });
}
