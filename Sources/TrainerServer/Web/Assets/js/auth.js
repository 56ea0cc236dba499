// Log-in and sign-up forms: post JSON, then go where the visitor was headed.
import { api, showError } from './common.js';

const form = document.getElementById('auth-form');
const errorBox = document.getElementById('form-error');

/** Only paths of this site: never another origin (`//evil`, `https:`). */
function nextPath() {
  const next = new URLSearchParams(location.search).get('next') || '';
  return next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/\\') ? next : '/datasets';
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
