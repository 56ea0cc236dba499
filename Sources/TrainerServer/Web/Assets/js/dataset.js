// The dataset page: uploads straight to the bucket (drag-and-drop of files or folders, or the
// file inputs), six at a time with per-file and total progress and retry; zip imports (one
// upload, unpacked and checked by the server, its progress followed); the pair grid with
// thumbnails, inline caption editing and each sample's findings; delete.
import { api, el, formatBytes, samplesOf, toast } from './common.js';

const page = document.getElementById('dataset-page');
const datasetId = page.dataset.datasetId;
const batchSize = Number(page.dataset.batchSize) || 500;
const parallelUploads = 6;
const pageSize = 24;

const state = { dataset: null, samples: [], findingsByStem: new Map(), page: 0, drafts: new Map(), draftRun: null };

// MARK: Loading and the grid

async function load() {
  try {
    const [dataset, drafts] = await Promise.all([api('GET', `/api/datasets/${datasetId}`), api('GET', `/api/datasets/${datasetId}/drafts`)]);
    state.dataset = dataset;
    state.drafts = new Map(drafts.drafts.map((draft) => [draft.stem, draft]));
    state.draftRun = drafts.run || null;
  } catch (error) {
    toast(error.message);
    return;
  }
  state.samples = samplesOf(state.dataset.files || []);
  state.findingsByStem = new Map();
  const general = [];
  const stems = new Set(state.samples.map((sample) => sample.stem));
  for (const finding of (state.dataset.validation || {}).findings || []) {
    const stem = stemOfKey(finding.file);
    if (stem !== null && stems.has(stem)) {
      if (!state.findingsByStem.has(stem)) state.findingsByStem.set(stem, []);
      state.findingsByStem.get(stem).push(finding);
    } else {
      general.push(finding);
    }
  }
  renderSummary();
  renderGeneralFindings(general);
  renderGrid();
  renderDraftRun();
}

/** `target/cat.png` → `cat`; empty keys (the whole dataset) → null. */
function stemOfKey(key) {
  if (!key) return null;
  const name = key.split('/').pop();
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(0, dot) : name;
}

function renderSummary() {
  const dataset = state.dataset;
  const parts = [`${dataset.sampleCount} samples`, `${dataset.fileCount} files`, formatBytes(dataset.totalBytes)];
  if (dataset.sound) parts.push('ready to train');
  else if (dataset.errorCount > 0) parts.push(`${dataset.errorCount} to fix`);
  if (dataset.warningCount > 0) parts.push(`${dataset.warningCount} warnings`);
  if (dataset.lockedByJobId) parts.push('in training: files cannot change until the job ends');
  document.getElementById('dataset-summary').textContent = parts.join(' · ');
}

function findingItem(finding) {
  return el('li', { className: `finding ${finding.severity}`, dataset: { code: finding.code } },
    el('span', { className: 'severity', text: finding.severity === 'error' ? 'Error' : 'Warning' }), ' ', finding.message);
}

function renderGeneralFindings(findings) {
  const panel = document.getElementById('findings-panel');
  const list = document.getElementById('dataset-findings');
  list.replaceChildren(...findings.map(findingItem));
  panel.hidden = findings.length === 0;
}

function visibleSamples() {
  const filter = document.getElementById('grid-filter').value;
  return filter === 'problems' ? state.samples.filter((sample) => state.findingsByStem.has(sample.stem)) : state.samples;
}

function imageCell(sample, file, role, label) {
  const figure = el('figure', { className: 'thumb' });
  if (file) {
    const source = `/api/datasets/${datasetId}/samples/${encodeURIComponent(sample.stem)}/${role}`;
    figure.append(el('a', { href: source, target: '_blank', rel: 'noopener', 'aria-label': `${label} of ${sample.stem}, full size` },
      el('img', { src: source, alt: `${label} of ${sample.stem}`, loading: 'lazy', width: file.width || undefined, height: file.height || undefined })));
  } else {
    figure.append(el('div', { className: 'missing', text: 'missing' }));
  }
  figure.append(el('figcaption', { text: label }));
  return figure;
}

function renderGrid() {
  const samples = visibleSamples();
  const pages = Math.max(1, Math.ceil(samples.length / pageSize));
  state.page = Math.min(state.page, pages - 1);
  const shown = samples.slice(state.page * pageSize, (state.page + 1) * pageSize);
  const controls = Math.max(1, state.dataset.controlsPerSample || 0, ...state.samples.map((sample) => sample.controls.length));
  const list = document.getElementById('pair-list');
  list.replaceChildren(...shown.map((sample, index) => pairItem(sample, controls, state.page * pageSize + index)));
  document.getElementById('grid-empty').hidden = state.samples.length > 0;
  document.getElementById('pair-grid').hidden = state.samples.length === 0;
  const pager = document.getElementById('pager');
  pager.hidden = pages <= 1;
  document.getElementById('page-text').textContent = `Page ${state.page + 1} of ${pages} (${samples.length} samples)`;
  document.getElementById('page-prev').disabled = state.page === 0;
  document.getElementById('page-next').disabled = state.page >= pages - 1;
}

function pairItem(sample, controls, index) {
  const findings = state.findingsByStem.get(sample.stem) || [];
  const images = el('div', { className: 'pair-images' });
  for (let n = 0; n < controls; n += 1) images.append(imageCell(sample, sample.controls[n], `control_${n + 1}`, controls > 1 ? `Control ${n + 1}` : 'Control'));
  images.append(imageCell(sample, sample.target, 'target', 'Target'));

  const id = `caption-${index}`;
  const caption = el('textarea', {
    id, rows: 3, maxlength: 4000, className: 'caption',
    placeholder: state.dataset.defaultCaption ? `Default: ${state.dataset.defaultCaption}` : 'No instruction yet: write what the edit does',
  });
  caption.value = sample.caption ? sample.caption.caption || '' : '';
  const draft = state.drafts.get(sample.stem);
  const status = el('span', { className: 'save-status', 'aria-live': 'polite' });
  if (draft) return draftItem(sample, draft, images, findings, id);
  const save = el('button', { type: 'button', className: 'small', text: 'Save instruction' });
  const saveCaption = async () => {
    save.disabled = true;
    status.textContent = 'Saving…';
    try {
      await api('PATCH', `/api/datasets/${datasetId}/samples/${encodeURIComponent(sample.stem)}`, { caption: caption.value });
      status.textContent = 'Saved.';
      toast(`Saved the instruction of ${sample.stem}.`);
      const focusId = id;
      await load();
      const again = document.getElementById(focusId);
      if (again) again.focus();
    } catch (error) {
      status.textContent = error.message;
      save.disabled = false;
    }
  };
  save.addEventListener('click', saveCaption);
  caption.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) { event.preventDefault(); saveCaption(); }
  });
  caption.addEventListener('input', () => { status.textContent = ''; save.disabled = false; });

  const remove = el('button', { type: 'button', className: 'danger small', text: 'Remove sample', 'aria-label': `Remove sample ${sample.stem}` });
  remove.addEventListener('click', async () => {
    if (!confirm(`Remove the sample “${sample.stem}” (its images and instruction) from the dataset?`)) return;
    try {
      await api('DELETE', `/api/datasets/${datasetId}/samples/${encodeURIComponent(sample.stem)}`);
      toast(`Removed ${sample.stem}.`);
      await load();
    } catch (error) {
      toast(error.message);
    }
  });

  return el('li', { className: 'pair' + (findings.some((f) => f.severity === 'error') ? ' has-error' : ''), dataset: { stem: sample.stem } },
    images,
    el('div', { className: 'pair-text' },
      el('p', { className: 'stem break', text: sample.stem }),
      el('label', { for: id, className: 'caption-label' }, 'Instruction', el('span', { className: 'visually-hidden', text: ` for ${sample.stem}` })),
      caption,
      el('div', { className: 'caption-actions' }, save, status, remove),
      findings.length ? el('ul', { className: 'findings', 'aria-label': `Problems of ${sample.stem}` }, findings.map(findingItem)) : null));
}

/** A sample whose instruction is a draft: shown as a draft, to accept (as written or edited) or reject. */
function draftItem(sample, draft, images, findings, id) {
  const text = el('textarea', { id, rows: 3, maxlength: 4000, className: 'caption draft' });
  text.value = draft.text;
  const status = el('span', { className: 'save-status', 'aria-live': 'polite' });
  const accept = el('button', { type: 'button', className: 'small primary', text: 'Accept draft', 'aria-label': `Accept the drafted instruction of ${sample.stem}` });
  const reject = el('button', { type: 'button', className: 'small', text: 'Reject draft', 'aria-label': `Reject the drafted instruction of ${sample.stem}` });
  text.addEventListener('input', () => { accept.textContent = text.value === draft.text ? 'Accept draft' : 'Accept edited'; });
  const act = async (method, path, body, done) => {
    accept.disabled = true;
    reject.disabled = true;
    try {
      await api(method, path, body);
      toast(done);
      await load();
    } catch (error) {
      status.textContent = error.message;
      accept.disabled = false;
      reject.disabled = false;
    }
  };
  const base = `/api/datasets/${datasetId}/drafts/${encodeURIComponent(sample.stem)}`;
  accept.addEventListener('click', () => act('POST', `${base}/accept`, text.value === draft.text ? {} : { caption: text.value }, `Accepted the instruction of ${sample.stem}.`));
  reject.addEventListener('click', () => act('DELETE', base, undefined, `Rejected the draft of ${sample.stem}.`));
  return el('li', { className: 'pair has-draft', dataset: { stem: sample.stem } },
    images,
    el('div', { className: 'pair-text' },
      el('p', { className: 'stem break', text: sample.stem }),
      el('label', { for: id, className: 'caption-label' }, 'Instruction ', el('span', { className: 'badge draft-badge', text: 'Draft' }),
        el('span', { className: 'visually-hidden', text: ` for ${sample.stem}` })),
      text,
      el('p', { className: 'hint', text: `Drafted by ${draft.source.replace(/^(worker|endpoint):/, '')}; it trains nothing until you accept it.` }),
      el('div', { className: 'caption-actions' }, accept, reject, status),
      findings.length ? el('ul', { className: 'findings', 'aria-label': `Problems of ${sample.stem}` }, findings.map(findingItem)) : null));
}

// MARK: Drafted instructions

function renderDraftRun() {
  const run = state.draftRun;
  const status = document.getElementById('draft-status');
  const button = document.getElementById('draft-instructions');
  const running = run && run.state === 'running';
  button.disabled = running;
  const toReview = state.drafts.size === 1 ? '1 draft to review' : `${state.drafts.size} drafts to review`;
  if (!run) status.textContent = state.drafts.size ? toReview : '';
  else if (running) status.textContent = run.mode === 'worker' ? `Drafting on a GPU worker: ${run.samplesDone} of ${run.samplesTotal}…` : `Drafting: ${run.samplesDone} of ${run.samplesTotal}…`;
  else if (run.state === 'failed') status.textContent = `Drafting failed: ${run.error || 'no drafts'}`;
  else status.textContent = state.drafts.size ? toReview + (run.error ? ` (${run.error})` : '') : (run.error || '');
  if (running) followDraftRun();
}

/** Follows a running draft run by its status alone (the grid, with any caption being typed,
 * stays as it is), then loads the page's data once when it has ended. */
let following = false;
async function followDraftRun() {
  if (following) return;
  following = true;
  try {
    while (state.draftRun && state.draftRun.state === 'running') {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const drafts = await api('GET', `/api/datasets/${datasetId}/drafts`);
      state.draftRun = drafts.run || null;
      if (state.draftRun && state.draftRun.state === 'running') renderDraftRun();
    }
  } catch (error) {
    toast(error.message);
  } finally {
    following = false;
  }
  await load();
}

document.getElementById('draft-instructions').addEventListener('click', async () => {
  try {
    state.draftRun = await api('POST', `/api/datasets/${datasetId}/drafts`);
    renderDraftRun();
  } catch (error) {
    toast(error.message);
  }
});

document.getElementById('grid-filter').addEventListener('change', () => { state.page = 0; renderGrid(); });
document.getElementById('page-prev').addEventListener('click', () => { state.page -= 1; renderGrid(); });
document.getElementById('page-next').addEventListener('click', () => { state.page += 1; renderGrid(); });

// MARK: Uploads

const uploads = { entries: [], running: false };
const uploadList = document.getElementById('upload-list');

function contentTypeOf(path) {
  const extension = path.split('.').pop().toLowerCase();
  return { png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', webp: 'image/webp', txt: 'text/plain; charset=utf-8' }[extension] || 'application/octet-stream';
}

function addFiles(files) {
  const added = [];
  for (const { file, path } of files) {
    const progress = el('progress', { max: file.size || 1, value: 0, 'aria-label': `Upload of ${path}` });
    const status = el('span', { className: 'upload-status', text: 'waiting' });
    const row = el('li', { className: 'upload waiting' }, el('span', { className: 'upload-name break', text: path }), progress, status);
    uploadList.append(row);
    added.push({ file, path, row, progress, status, loaded: 0, state: 'waiting' });
  }
  uploads.entries.push(...added);
  document.getElementById('uploads').hidden = false;
  run(added);
}

function mark(entry, newState, text) {
  entry.state = newState;
  entry.row.className = `upload ${newState}`;
  entry.status.textContent = text || newState;
  if (newState === 'done' || newState === 'skipped') { entry.loaded = entry.file.size; entry.progress.value = entry.file.size || 1; }
  updateTotal();
}

function updateTotal() {
  const all = uploads.entries;
  const total = all.reduce((sum, entry) => sum + entry.file.size, 0) || 1;
  const loaded = all.reduce((sum, entry) => sum + entry.loaded, 0);
  const done = all.filter((entry) => entry.state === 'done' || entry.state === 'skipped').length;
  const failed = all.filter((entry) => entry.state === 'failed').length;
  const bar = document.getElementById('total-progress');
  bar.max = total;
  bar.value = loaded;
  document.getElementById('total-text').textContent =
    `${done} of ${all.length} files · ${formatBytes(loaded)} of ${formatBytes(total)}` + (failed ? ` · ${failed} failed` : '');
  document.getElementById('retry-failed').hidden = failed === 0 || uploads.running;
}

async function sha256Hex(file) {
  if (!(window.crypto && crypto.subtle)) return undefined; // only in secure contexts (https, localhost)
  const digest = await crypto.subtle.digest('SHA-256', await file.arrayBuffer());
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** Runs `work` over `items`, `limit` at a time. */
async function pool(items, limit, work) {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next];
      next += 1;
      await work(item);
    }
  });
  await Promise.all(workers);
}

function put(entry, upload) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open(upload.method || 'PUT', upload.url);
    // Exactly the signed headers; the browser sets Content-Length (and Host) itself.
    for (const [name, value] of Object.entries(upload.headers || {})) {
      if (!['content-length', 'host'].includes(name.toLowerCase())) request.setRequestHeader(name, value);
    }
    request.upload.addEventListener('progress', (event) => {
      entry.loaded = event.loaded;
      entry.progress.value = event.loaded;
      updateTotal();
    });
    request.addEventListener('load', () => (request.status >= 200 && request.status < 300 ? resolve() : reject(new Error(`the bucket answered ${request.status}`))));
    request.addEventListener('error', () => reject(new Error('network error (is the bucket reachable, and its CORS set?)')));
    request.send(entry.file);
  });
}

async function uploadBatch(batch) {
  for (const entry of batch) mark(entry, 'preparing', 'checksum…');
  await pool(batch, 4, async (entry) => { entry.sha256 = await sha256Hex(entry.file).catch(() => undefined); });
  let pending = batch;
  let signed = null;
  // A refused path fails only itself: sign the rest again.
  for (let attempt = 0; attempt < 2 && pending.length; attempt += 1) {
    try {
      signed = await api('POST', `/api/datasets/${datasetId}/uploads`, {
        files: pending.map((entry) => ({ path: entry.path, size: entry.file.size, contentType: contentTypeOf(entry.path), sha256: entry.sha256 })),
      });
      break;
    } catch (error) {
      const refused = new Map((error.details || []).map((item) => [item.path, item.reason]));
      if (refused.size === 0 || attempt === 1) {
        for (const entry of pending) mark(entry, 'failed', error.message);
        return;
      }
      for (const entry of pending) if (refused.has(entry.path)) mark(entry, 'refused', refused.get(entry.path));
      pending = pending.filter((entry) => !refused.has(entry.path));
    }
  }
  if (!signed) return;
  const byPath = new Map(signed.uploads.map((upload) => [upload.path, upload]));
  for (const path of signed.skipped || []) {
    const entry = pending.find((candidate) => candidate.path === path);
    if (entry) mark(entry, 'skipped', 'skipped (system file)');
  }
  const toSend = pending.filter((entry) => byPath.has(entry.path));
  for (const entry of toSend) mark(entry, 'waiting', 'waiting');
  await pool(toSend, parallelUploads, async (entry) => {
    mark(entry, 'uploading', 'uploading');
    try {
      await put(entry, byPath.get(entry.path));
      mark(entry, 'sent', 'checking…');
    } catch (error) {
      entry.loaded = 0;
      mark(entry, 'failed', error.message);
    }
  });
  const sent = toSend.filter((entry) => entry.state === 'sent');
  if (!sent.length) return;
  try {
    const result = await api('POST', `/api/datasets/${datasetId}/uploads/complete`, { paths: sent.map((entry) => entry.path) });
    const failures = new Map((result.failures || []).map((item) => [item.path, item.reason]));
    for (const entry of sent) {
      if (failures.has(entry.path)) { entry.loaded = 0; mark(entry, 'failed', failures.get(entry.path)); } else mark(entry, 'done', 'done');
    }
  } catch (error) {
    for (const entry of sent) { entry.loaded = 0; mark(entry, 'failed', error.message); }
  }
}

/** Upload runs go one after another: files added meanwhile wait for the run in progress. */
let runs = Promise.resolve();
function run(entries) {
  uploads.running = true;
  runs = runs.then(() => runNow(entries)).catch((error) => toast(error.message));
  return runs;
}

async function runNow(entries) {
  uploads.running = true;
  updateTotal();
  document.getElementById('total-label').textContent = 'Uploading';
  for (let start = 0; start < entries.length; start += batchSize) await uploadBatch(entries.slice(start, start + batchSize));
  uploads.running = uploads.entries.some((entry) => ['waiting', 'uploading', 'preparing', 'sent'].includes(entry.state));
  const failed = uploads.entries.filter((entry) => entry.state === 'failed' || entry.state === 'refused').length;
  document.getElementById('total-label').textContent = failed ? 'Some files did not upload' : 'All files uploaded';
  updateTotal();
  await load();
}

document.getElementById('retry-failed').addEventListener('click', () => {
  const failed = uploads.entries.filter((entry) => entry.state === 'failed');
  for (const entry of failed) mark(entry, 'waiting', 'waiting');
  run(failed);
});

// MARK: Zip imports

/** Uploads a zip as one object, has the server unpack it, and shows its progress and verdict. */
async function importZip(file) {
  const panel = document.getElementById('zip-import');
  const label = document.getElementById('zip-label');
  const bar = document.getElementById('zip-progress');
  const status = document.getElementById('zip-status');
  panel.hidden = false;
  label.textContent = `Importing ${file.name}`;
  status.removeAttribute('role');
  try {
    const created = await api('POST', `/api/datasets/${datasetId}/imports`, { fileName: file.name, size: file.size });
    status.textContent = 'uploading the zip…';
    bar.max = file.size || 1;
    await new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open(created.upload.method || 'PUT', created.upload.url);
      for (const [name, value] of Object.entries(created.upload.headers || {})) {
        if (!['content-length', 'host'].includes(name.toLowerCase())) request.setRequestHeader(name, value);
      }
      request.upload.addEventListener('progress', (event) => { bar.value = event.loaded; });
      request.addEventListener('load', () => (request.status >= 200 && request.status < 300 ? resolve() : reject(new Error(`the bucket answered ${request.status}`))));
      request.addEventListener('error', () => reject(new Error('network error (is the bucket reachable, and its CORS set?)')));
      request.send(file);
    });
    let current = await api('POST', `/api/datasets/${datasetId}/imports/${created.import.id}/unpack`);
    while (current.state === 'unpacking') {
      const checked = current.entriesTotal > 0 && current.entriesDone === current.entriesTotal;
      bar.max = (checked ? current.bytesTotal : current.entriesTotal) || 1;
      bar.value = checked ? current.bytesWritten : current.entriesDone;
      status.textContent = checked
        ? `writing into the dataset: ${formatBytes(current.bytesWritten)} of ${formatBytes(current.bytesTotal)}`
        : `unpacking on the server: ${current.entriesDone} of ${current.entriesTotal || '…'} files checked`;
      await new Promise((resolve) => setTimeout(resolve, 250));
      current = await api('GET', `/api/datasets/${datasetId}/imports/${current.id}`);
    }
    if (current.state === 'done') {
      bar.value = bar.max;
      label.textContent = `Imported ${file.name}`;
      status.textContent = `${current.placed} files added${current.ignored ? `, ${current.ignored} folder or system entries skipped` : ''}.`;
    } else {
      label.textContent = `${file.name} was refused`;
      status.setAttribute('role', 'alert');
      status.textContent = current.error ? current.error.message : current.state;
    }
  } catch (error) {
    label.textContent = `${file.name} was not imported`;
    status.setAttribute('role', 'alert');
    status.textContent = error.message;
  }
  await load();
}

document.getElementById('pick-zip').addEventListener('change', (event) => {
  const [file] = event.target.files;
  event.target.value = '';
  if (file) importZip(file);
});

for (const id of ['pick-folder', 'pick-files']) {
  const input = document.getElementById(id);
  input.addEventListener('change', () => {
    const files = [...input.files].map((file) => ({ file, path: file.webkitRelativePath || file.name }));
    input.value = '';
    if (files.length) addFiles(files);
  });
}

// Dropped folders are walked with the entries API; their paths keep the folder names, which
// say each file's role (control/, target/…).
async function entriesOf(entry) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    return [{ file, path: entry.fullPath.replace(/^\/+/, '') }];
  }
  if (!entry.isDirectory) return [];
  const reader = entry.createReader();
  const children = [];
  for (;;) {
    const chunk = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!chunk.length) break;
    children.push(...chunk);
  }
  return (await Promise.all(children.map(entriesOf))).flat();
}

const dropZone = document.getElementById('drop-zone');
dropZone.addEventListener('dragover', (event) => { event.preventDefault(); dropZone.classList.add('over'); });
dropZone.addEventListener('dragleave', () => dropZone.classList.remove('over'));
dropZone.addEventListener('drop', async (event) => {
  event.preventDefault();
  dropZone.classList.remove('over');
  const items = [...(event.dataTransfer.items || [])].map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
  const dropped = [...event.dataTransfer.files];
  if (dropped.length === 1 && /\.zip$/i.test(dropped[0].name)) { importZip(dropped[0]); return; }
  let files;
  if (items.length && items.every(Boolean)) files = (await Promise.all(items.map(entriesOf))).flat();
  else files = [...event.dataTransfer.files].map((file) => ({ file, path: file.name }));
  if (files.length) addFiles(files);
});

document.getElementById('delete-dataset').addEventListener('click', async () => {
  const name = document.getElementById('dataset-title').textContent;
  if (!confirm(`Delete the dataset “${name}” and all its files? This cannot be undone.`)) return;
  try {
    await api('DELETE', `/api/datasets/${datasetId}`);
    location.assign('/datasets');
  } catch (error) {
    toast(error.message);
  }
});

load();
