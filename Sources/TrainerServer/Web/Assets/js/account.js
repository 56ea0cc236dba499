// API tokens: create (shown once, with a copy button) and revoke; for administrators, worker
// keys likewise.
import { api, el, formatTime, toast } from './common.js';

const form = document.getElementById('token-form');
const rows = document.getElementById('token-rows');
const empty = document.getElementById('no-tokens');
const box = document.getElementById('new-token');
const value = document.getElementById('new-token-value');

function revokeButton(id, name) {
  return el('button', { type: 'button', className: 'danger small', dataset: { revoke: id }, 'aria-label': `Revoke ${name}`, text: 'Revoke' });
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = form.elements.name.value.trim();
  if (!name) return;
  try {
    const token = await api('POST', '/api/tokens', { name });
    value.value = token.token;
    box.hidden = false;
    value.focus();
    value.select();
    rows.prepend(el('tr', { dataset: { tokenId: token.id } },
      el('td', { className: 'break', text: token.name }),
      el('td', {}, el('code', { text: token.hint + '…' })),
      el('td', {}, el('time', { datetime: token.createdAt, text: formatTime(token.createdAt) })),
      el('td', { text: 'never' }),
      el('td', {}, revokeButton(token.id, token.name))));
    empty.hidden = true;
    form.reset();
  } catch (error) {
    toast(error.message);
  }
});

// A copy button for a secret shown once; without clipboard access the text is selected instead.
function copies(buttonId, input, noun) {
  document.getElementById(buttonId).addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(input.value);
      toast(`${noun[0].toUpperCase()}${noun.slice(1)} copied.`);
    } catch (error) {
      input.select();
      toast(`Press Ctrl+C (⌘C) to copy the selected ${noun}.`);
    }
  });
}

copies('copy-token', value, 'token');

rows.addEventListener('click', async (event) => {
  const button = event.target.closest('button[data-revoke]');
  if (!button) return;
  const row = button.closest('tr');
  if (!confirm(`Revoke the token “${row.cells[0].textContent}”? Programs using it stop working.`)) return;
  try {
    await api('DELETE', '/api/tokens/' + button.dataset.revoke);
    row.remove();
    empty.hidden = rows.rows.length > 0;
    toast('Token revoked.');
  } catch (error) {
    toast(error.message);
  }
});

// Worker keys (the section is on the page for administrators only).
const keySection = document.getElementById('worker-keys');
if (keySection) {
  const keyForm = document.getElementById('worker-key-form');
  const keyRows = document.getElementById('worker-key-rows');
  const noKeys = document.getElementById('no-worker-keys');
  const keyBox = document.getElementById('new-worker-key');
  const keyValue = document.getElementById('new-worker-key-value');

  const time = (value) => value ? el('time', { datetime: value, text: formatTime(value) }) : 'never';
  const keyRow = (key) => el('tr', { dataset: { workerKeyId: key.id } },
    el('td', { className: 'break', text: key.name }),
    el('td', {}, time(key.createdAt)),
    el('td', {}, time(key.lastUsedAt)),
    el('td', { text: String(key.runningJobs) }),
    el('td', {}, key.revokedAt ? el('span', {}, 'revoked ', time(key.revokedAt)) : 'active'),
    el('td', {}, key.revokedAt ? '' : el('button', { type: 'button', className: 'danger small', dataset: { revokeKey: key.id }, 'aria-label': `Revoke ${key.name}`, text: 'Revoke' })));

  const load = async () => {
    try {
      const { workerKeys } = await api('GET', '/api/worker-keys');
      keyRows.replaceChildren(...workerKeys.map(keyRow));
      noKeys.hidden = workerKeys.length > 0;
    } catch (error) {
      toast(error.message);
    }
  };

  keyForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = keyForm.elements.name.value.trim();
    if (!name) return;
    try {
      const key = await api('POST', '/api/worker-keys', { name });
      keyValue.value = key.key;
      keyBox.hidden = false;
      keyValue.focus();
      keyValue.select();
      keyForm.reset();
      await load();
    } catch (error) {
      toast(error.message);
    }
  });

  copies('copy-worker-key', keyValue, 'worker key');

  keyRows.addEventListener('click', async (event) => {
    const button = event.target.closest('button[data-revoke-key]');
    if (!button) return;
    const name = button.closest('tr').cells[0].textContent;
    if (!confirm(`Revoke the worker key “${name}”? Its workers stop, and their jobs go back to the queue.`)) return;
    try {
      await api('POST', `/api/worker-keys/${button.dataset.revokeKey}/revoke`);
      toast('Worker key revoked.');
      await load();
    } catch (error) {
      toast(error.message);
    }
  });

  load();
}
