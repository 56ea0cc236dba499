// Shared by every page: the API client (session cookie + CSRF header), small DOM helpers,
// formatting, and the layout's behaviour (log out, local times, byte sizes).

const csrfMeta = document.querySelector('meta[name="csrf-token"]');
export const csrfToken = csrfMeta ? csrfMeta.content : '';

/** Job states after which nothing changes any more (JobStatus.isFinal). */
export const finalStates = ['completed', 'failed', 'cancelled', 'timed_out'];

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }
}

/** Calls the JSON API with the session cookie; data-changing calls carry the CSRF token. */
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  } catch (error) {
    throw new ApiError(0, 'network', 'The server could not be reached; check your connection and try again.');
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401) location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || 'error', error.message || `The server answered ${response.status}.`, error.details);
  }
  return data;
}

/** Builds an element; text is always set with textContent, never parsed as HTML. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'text') node.textContent = value;
    else if (name === 'className') node.className = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A dataset's files (GET /api/datasets/{id}) grouped into samples, in the server's order (by stem). */
export function samplesOf(files) {
  const byStem = new Map();
  for (const file of files || []) {
    if (!byStem.has(file.stem)) byStem.set(file.stem, { stem: file.stem, controls: [], target: null, caption: null });
    const sample = byStem.get(file.stem);
    if (file.role === 'target') sample.target = file;
    else if (file.role === 'caption') sample.caption = file;
    else if (file.role.startsWith('control_')) sample.controls[Number(file.role.slice(8)) - 1] = file;
  }
  return [...byStem.values()].sort((a, b) => (a.stem < b.stem ? -1 : a.stem > b.stem ? 1 : 0));
}

export function formatBytes(count) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Number(count) || 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return (unit === 0 ? String(value) : value.toFixed(value < 10 ? 1 : 0)) + ' ' + units[unit];
}

export function formatDuration(seconds) {
  if (seconds === undefined || seconds === null || !isFinite(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = s % 60;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min ${rest} s`;
  return `${rest} s`;
}

export function formatTime(iso) {
  const date = new Date(iso);
  return isNaN(date) ? iso : date.toLocaleString();
}

/** A short message for everyone, read out by screen readers. */
export function toast(message) {
  const box = document.getElementById('toast');
  if (!box) return;
  box.textContent = message;
  box.classList.add('shown');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.classList.remove('shown'), 4000);
}

export function showError(target, error) {
  if (target) target.textContent = error ? (error.message || String(error)) : '';
}

function localiseTimes(root = document) {
  for (const node of root.querySelectorAll('time[datetime]')) node.textContent = formatTime(node.getAttribute('datetime'));
  for (const node of root.querySelectorAll('[data-bytes]')) node.textContent = formatBytes(node.dataset.bytes);
}

localiseTimes();
const logOut = document.getElementById('log-out');
if (logOut) {
  logOut.addEventListener('click', async () => {
    try { await api('POST', '/api/auth/logout'); } catch (error) { /* the session is gone either way */ }
    location.assign('/login');
  });
}
