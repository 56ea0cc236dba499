// API tokens: create (shown once, with a copy button) and revoke.
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

document.getElementById('copy-token').addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText(value.value);
    toast('Token copied.');
  } catch (error) {
    value.select();
    toast('Press Ctrl+C (⌘C) to copy the selected token.');
  }
});

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
