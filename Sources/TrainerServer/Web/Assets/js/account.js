// API tokens: create (shown once, with a copy button) and revoke; for administrators, worker
// keys likewise.
import { api, el, formatBytes, formatTime, toast } from './common.js';

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

// Webhooks: add (the secret shown once), send a test event, see each delivery's tries, delete.
{
  const hookForm = document.getElementById('webhook-form');
  const hookRows = document.getElementById('webhook-rows');
  const noHooks = document.getElementById('no-webhooks');
  const secretBox = document.getElementById('new-webhook');
  const secretValue = document.getElementById('new-webhook-secret');
  const panel = document.getElementById('webhook-deliveries');
  const deliveryRows = document.getElementById('delivery-rows');
  const noDeliveries = document.getElementById('no-deliveries');
  let shown = null; // the webhook whose deliveries are on the page
  let refresh = null;

  const button = (text, label, data, className = 'small') => el('button', { type: 'button', className, dataset: data, 'aria-label': label, text });
  const hookRow = (hook) => el('tr', { dataset: { webhookId: hook.id } },
    el('td', { className: 'break' }, hook.url, hook.description ? el('div', { className: 'summary', text: hook.description }) : ''),
    el('td', { text: hook.events.join(', ') }),
    el('td', {}, el('time', { datetime: hook.createdAt, text: formatTime(hook.createdAt) })),
    el('td', {}, el('div', { className: 'actions' },
      button('Send test event', `Send a test event to ${hook.url}`, { testWebhook: hook.id }),
      button('Deliveries', `Deliveries to ${hook.url}`, { showDeliveries: hook.id }),
      button('Delete', `Delete the webhook to ${hook.url}`, { deleteWebhook: hook.id }, 'danger small'))));

  const tries = (delivery) => delivery.attempts.length === 0 ? 'not yet'
    : delivery.attempts.map((attempt) => attempt.statusCode ? String(attempt.statusCode) : `error (${attempt.error})`).join(', ');
  const deliveryRow = (delivery) => el('tr', {},
    el('td', { text: delivery.eventType }),
    el('td', {}, el('time', { datetime: delivery.createdAt, text: formatTime(delivery.createdAt) })),
    el('td', { text: delivery.state }),
    el('td', { className: 'break', text: tries(delivery) }),
    el('td', {}, delivery.state === 'pending' && delivery.nextAttemptAt ? el('time', { datetime: delivery.nextAttemptAt, text: formatTime(delivery.nextAttemptAt) }) : '—'));

  const loadHooks = async () => {
    try {
      const { webhooks } = await api('GET', '/api/webhooks');
      hookRows.replaceChildren(...webhooks.map(hookRow));
      noHooks.hidden = webhooks.length > 0;
    } catch (error) {
      toast(error.message);
    }
  };

  // The log of one webhook, followed while any of its deliveries is pending.
  const showDeliveries = async (id, url) => {
    shown = id;
    clearTimeout(refresh);
    document.getElementById('deliveries-url').textContent = url;
    panel.hidden = false;
    try {
      const { deliveries } = await api('GET', `/api/webhooks/${id}/deliveries`);
      if (shown !== id) return;
      deliveryRows.replaceChildren(...deliveries.map(deliveryRow));
      noDeliveries.hidden = deliveries.length > 0;
      if (deliveries.some((delivery) => delivery.state === 'pending')) refresh = setTimeout(() => showDeliveries(id, url), 2000);
    } catch (error) {
      if (shown === id) toast(error.message);
    }
  };

  hookForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const events = [...hookForm.querySelectorAll('input[name=events]:checked')].map((box) => box.value);
    if (events.length === 0) {
      toast('Choose at least one event.');
      return;
    }
    const description = hookForm.elements.description.value.trim();
    try {
      const hook = await api('POST', '/api/webhooks', { url: hookForm.elements.url.value.trim(), events, ...(description ? { description } : {}) });
      secretValue.value = hook.secret;
      secretBox.hidden = false;
      secretValue.focus();
      secretValue.select();
      hookForm.reset();
      await loadHooks();
    } catch (error) {
      toast(error.message);
    }
  });

  copies('copy-webhook-secret', secretValue, 'secret');

  hookRows.addEventListener('click', async (event) => {
    const target = event.target.closest('button');
    if (!target) return;
    const url = target.closest('tr').cells[0].firstChild.textContent;
    try {
      if (target.dataset.testWebhook) {
        await api('POST', `/api/webhooks/${target.dataset.testWebhook}/test`);
        toast('Test event queued; its answer shows in the deliveries.');
        await showDeliveries(target.dataset.testWebhook, url);
      } else if (target.dataset.showDeliveries) {
        await showDeliveries(target.dataset.showDeliveries, url);
      } else if (target.dataset.deleteWebhook) {
        if (!confirm(`Delete the webhook to ${url}? Deliveries not yet sent are dropped.`)) return;
        // Stop following its deliveries first: a refresh due meanwhile (or run while the dialog
        // was open) would otherwise ask for the log of a deleted webhook and show it again.
        if (shown === target.dataset.deleteWebhook) {
          shown = null;
          clearTimeout(refresh);
          panel.hidden = true;
        }
        await api('DELETE', `/api/webhooks/${target.dataset.deleteWebhook}`);
        toast('Webhook deleted.');
        await loadHooks();
      }
    } catch (error) {
      toast(error.message);
    }
  });

  loadHooks();
}

// What this account holds, against its quota, and how long the server keeps data.
(async () => {
  const line = document.getElementById('storage-usage');
  try {
    const usage = await api('GET', '/api/usage');
    let text = `Using ${formatBytes(usage.usedBytes)}`;
    if (usage.quotaBytes !== undefined) text += ` of your ${formatBytes(usage.quotaBytes)} quota`;
    text += `: datasets ${formatBytes(usage.datasetBytes)}, job outputs ${formatBytes(usage.outputBytes)}.`;
    if (usage.retentionDays !== undefined) {
      text += ` Job outputs are deleted ${usage.retentionDays} days after the job ends, and datasets ${usage.retentionDays} days after they last changed or trained.`;
    }
    line.textContent = text;
  } catch (error) {
    line.textContent = error.message;
  }
})();
