// The job page: live over server-sent events (the Refresh button reloads by hand), the loss
// chart drawn as SVG, samples by step beside their control images, downloads, log, cancel, retry.
import { api, el, finalStates, formatBytes, formatDuration, formatTime, samplesOf, toast } from './common.js';

const page = document.getElementById('job-page');
const jobId = page.dataset.jobId;
const datasetId = page.dataset.datasetId;
const state = { job: null, losses: new Map(), samplePairs: null, controlsOf: new Map(), events: [], source: null };

function text(id, value) {
  document.getElementById(id).textContent = value === undefined || value === null || value === '' ? '—' : value;
}

function artifactURL(artifact) {
  return `/api/jobs/${jobId}/artifacts/${artifact.id}`;
}

function render(job) {
  state.job = job;
  const progress = job.progress || {};
  const status = document.getElementById('job-status');
  status.textContent = job.status.replace('_', ' ');
  status.className = `badge status-${job.status}`;
  text('job-phase', progress.phase);
  text('job-step', progress.totalSteps ? `${progress.step || 0}/${progress.totalSteps}` : null);
  text('job-loss', typeof progress.loss === 'number' ? progress.loss.toFixed(4) : null);
  text('job-speed', typeof progress.itPerSec === 'number' ? (progress.itPerSec >= 1 ? `${progress.itPerSec.toFixed(2)} it/s` : `${(1 / progress.itPerSec).toFixed(1)} s/it`) : null);
  text('job-eta', finalStates.includes(job.status) ? null : (progress.etaSeconds !== undefined ? formatDuration(progress.etaSeconds) : null));
  text('job-queue', formatDuration(job.queueSeconds));
  text('job-execution', job.executionSeconds !== undefined ? formatDuration(job.executionSeconds) : null);
  text('job-cost', typeof job.cost === 'number' ? job.cost.toFixed(2) : null);
  text('job-attempt', job.attempt);
  text('job-runpod', job.runpodJobId);
  const bar = document.getElementById('job-progress');
  bar.max = progress.totalSteps || 1;
  bar.value = job.status === 'completed' ? bar.max : (progress.step || 0);
  document.getElementById('job-error').textContent = job.error || '';
  document.getElementById('cancel-job').hidden = finalStates.includes(job.status) || job.cancelRequested;
  document.getElementById('retry-job').hidden = !['failed', 'cancelled', 'timed_out'].includes(job.status);
  document.getElementById('delete-job').hidden = !finalStates.includes(job.status);

  if (typeof progress.loss === 'number' && typeof progress.step === 'number') state.losses.set(progress.step, progress.loss);
  drawLoss();
  renderFiles(job.artifacts || []);
  renderSamples(job.artifacts || []);
  if (job.events) state.events = job.events;
  renderLog();
}

// MARK: Loss chart

function drawLoss() {
  const points = [...state.losses.entries()].sort((a, b) => a[0] - b[0]);
  const box = document.getElementById('loss-chart');
  if (points.length < 2) return;
  // Drawn at the box's own width, so the labels keep their size on phones and laptops alike.
  const width = Math.max(280, box.clientWidth || 640), height = 220, left = 56, right = 12, top = 12, bottom = 32;
  const steps = points.map((p) => p[0]), losses = points.map((p) => p[1]);
  const minStep = Math.min(...steps), maxStep = Math.max(...steps);
  let minLoss = Math.min(...losses), maxLoss = Math.max(...losses);
  if (maxLoss === minLoss) { maxLoss += 0.01; minLoss -= 0.01; }
  const x = (step) => left + ((step - minStep) / Math.max(1, maxStep - minStep)) * (width - left - right);
  const y = (loss) => top + (1 - (loss - minLoss) / (maxLoss - minLoss)) * (height - top - bottom);
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  const last = points[points.length - 1];
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `Loss over ${points.length} reported steps, from ${losses[0].toFixed(4)} at step ${steps[0]} to ${last[1].toFixed(4)} at step ${last[0]}`);
  svg.setAttribute('data-points', String(points.length));
  const add = (tag, attributes, content) => {
    const node = document.createElementNS(ns, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (content !== undefined) node.textContent = content;
    svg.append(node);
    return node;
  };
  add('line', { x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, class: 'axis' });
  add('line', { x1: left, y1: top, x2: left, y2: height - bottom, class: 'axis' });
  add('text', { x: left - 6, y: top + 10, 'text-anchor': 'end', class: 'tick' }, maxLoss.toFixed(3));
  add('text', { x: left - 6, y: height - bottom, 'text-anchor': 'end', class: 'tick' }, minLoss.toFixed(3));
  add('text', { x: left, y: height - 10, 'text-anchor': 'start', class: 'tick' }, `step ${minStep}`);
  add('text', { x: width - right, y: height - 10, 'text-anchor': 'end', class: 'tick' }, `step ${maxStep}`);
  add('polyline', { points: points.map(([step, loss]) => `${x(step).toFixed(1)},${y(loss).toFixed(1)}`).join(' '), class: 'loss-line' });
  add('circle', { cx: x(last[0]).toFixed(1), cy: y(last[1]).toFixed(1), r: 3.5, class: 'loss-dot' });
  box.replaceChildren(svg);
}

/**
 * The worker's loss.csv (uploaded every 30 s while training, and at the end) has every step so
 * far: merge it in whenever a new version appears (best effort), so a page opened mid-run still
 * draws the whole curve.
 */
async function loadLossFile(artifacts) {
  const file = artifacts.find((artifact) => artifact.kind === 'loss');
  const version = file && `${file.key}:${file.bytes}`;
  if (!file || state.lossFileVersion === version) return;
  state.lossFileVersion = version;
  try {
    const response = await fetch(artifactURL(file), { credentials: 'same-origin' });
    if (!response.ok) return;
    for (const line of (await response.text()).split('\n').slice(1)) {
      const [step, loss] = line.split(',').map(Number);
      if (isFinite(step) && isFinite(loss) && line) state.losses.set(step, loss);
    }
    drawLoss();
  } catch (error) { /* the live points stay */ }
}

// MARK: Files and samples

function kindLabel(artifact) {
  return {
    lora: 'Final LoRA', checkpoint: `Checkpoint at step ${artifact.step}`,
    optimizer: `Optimizer state at step ${artifact.step} (for resuming)`,
    config: 'Training config', log: 'Training log', loss: 'Loss per step (CSV)',
  }[artifact.kind] || artifact.kind;
}

function renderFiles(artifacts) {
  const files = artifacts.filter((artifact) => artifact.kind !== 'sample')
    .sort((a, b) => (a.kind === 'lora' ? -1 : b.kind === 'lora' ? 1 : (b.step || 0) - (a.step || 0)));
  const list = document.getElementById('job-files');
  list.replaceChildren(...(files.length ? files.map((artifact) => el('li', {},
    el('a', { href: artifactURL(artifact), download: '' }, kindLabel(artifact)), ' ',
    el('span', { className: 'hint break', text: `${artifact.key.split('/').pop()} · ${formatBytes(artifact.bytes || 0)}` })))
    : [el('li', { className: 'hint', text: 'None yet.' })]));
  // The download button gives the job's result: a promoted checkpoint, else the final LoRA.
  const result = state.job && state.job.result;
  const download = document.getElementById('lora-download');
  download.hidden = !result;
  if (result) {
    download.href = `/api/jobs/${jobId}/result`;
    download.textContent = result.promoted ? `Download LoRA (step ${result.step})` : 'Download LoRA';
  }
  loadLossFile(artifacts);
}

async function loadSamplePairs() {
  const params = (state.job && state.job.params) || {};
  try {
    const dataset = await api('GET', `/api/datasets/${datasetId}`);
    const samples = samplesOf(dataset.files);
    state.controlsOf = new Map(samples.map((sample) => [sample.stem, sample.controls.filter(Boolean).map((file) => file.role)]));
    // The server's default sample pairs: the first two samples.
    const stems = samples.filter((sample) => sample.target).map((sample) => sample.stem);
    state.samplePairs = Array.isArray(params.samplePairs) ? params.samplePairs : stems.slice(0, 2);
  } catch (error) {
    state.samplePairs = Array.isArray(params.samplePairs) ? params.samplePairs : [];
  }
  if (state.job) renderSamples(state.job.artifacts || []);
}

/** "Use as result" beside a step's samples, when the job has ended and that step's checkpoint exists. */
function promoteButton(artifacts, step) {
  const job = state.job;
  if (!job || !['completed', 'cancelled'].includes(job.status)) return null;
  if (!artifacts.some((artifact) => artifact.kind === 'checkpoint' && artifact.step === step)) return null;
  if (job.result && job.result.promoted && job.result.step === step) return el('span', { className: 'badge ok result-badge', text: 'The result' });
  const button = el('button', { type: 'button', className: 'small promote', text: 'Use as result', 'aria-label': `Use the checkpoint of step ${step} as the result` });
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const job = await api('POST', `/api/jobs/${jobId}/promote`, { step });
      state.job = job;
      renderFiles(job.artifacts || []);
      renderSamples(job.artifacts || []);
      toast(`The checkpoint of step ${step} is now the result.`);
    } catch (error) {
      button.disabled = false;
      toast(error.message);
    }
  });
  return button;
}

function renderSamples(artifacts) {
  const samples = artifacts.filter((artifact) => artifact.kind === 'sample');
  const box = document.getElementById('job-samples');
  if (!samples.length || !state.samplePairs) return;
  const byStep = new Map();
  for (const artifact of samples) {
    const match = /_(\d+)\.[a-z]+$/i.exec(artifact.key);
    const index = match ? Number(match[1]) : 0;
    const step = artifact.step ?? 0;
    if (!byStep.has(step)) byStep.set(step, []);
    byStep.get(step).push({ index, artifact });
  }
  const rows = [...byStep.entries()].sort((a, b) => b[0] - a[0]).map(([step, items]) => el('section', { className: 'sample-step' },
    el('h3', { text: `Step ${step}` }, promoteButton(artifacts, step)),
    el('div', { className: 'sample-row' }, items.sort((a, b) => a.index - b.index).map(({ index, artifact }) => {
      const stem = state.samplePairs[index];
      const controls = stem ? (state.controlsOf.get(stem) || []) : [];
      return el('figure', { className: 'sample-pair' },
        el('div', { className: 'sample-images' },
          controls.map((role, n) => el('img', {
            src: `/api/datasets/${datasetId}/samples/${encodeURIComponent(stem)}/${role}`,
            alt: controls.length > 1 ? `Control image ${n + 1} of ${stem}` : `Control image of ${stem}`, loading: 'lazy', className: 'sample-control',
          })),
          el('img', { src: artifactURL(artifact), alt: `Sample ${index + 1} at step ${step}`, loading: 'lazy' })),
        el('figcaption', { className: 'break', text: stem ? `${stem}: control → sample` : `Sample ${index + 1}` }));
    }))));
  box.replaceChildren(...rows);
}

// MARK: Log

function renderLog() {
  const job = state.job;
  const lines = state.events.map((event) => `${formatTime(event.at)}  ${event.status}  ${event.message}`);
  if (job.progress && job.progress.message) lines.push(job.progress.message);
  if (job.errorDetail) lines.push('', job.errorDetail);
  const log = document.getElementById('job-log');
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  log.textContent = lines.slice(-200).join('\n');
  if (atBottom) log.scrollTop = log.scrollHeight;
}

// MARK: Live updates

async function refresh() {
  try {
    render(await api('GET', `/api/jobs/${jobId}`));
    if (!finalStates.includes(state.job.status)) listen();
  } catch (error) {
    toast(error.message);
  }
}

function listen() {
  if (state.source) return;
  const live = document.getElementById('live-state');
  const source = new EventSource(`/api/jobs/${jobId}/events`);
  state.source = source;
  live.textContent = 'Live: updates arrive as the job runs.';
  source.addEventListener('job', (event) => {
    const job = JSON.parse(event.data);
    const hadEvents = state.events.length;
    render(job);
    // The stream carries the job without its event log: fetch that when the status changes.
    if (finalStates.includes(job.status) || hadEvents === 0) api('GET', `/api/jobs/${jobId}`).then(render).catch(() => {});
    if (finalStates.includes(job.status)) stop('The job has ended.');
  });
  source.addEventListener('error', () => {
    if (state.job && finalStates.includes(state.job.status)) stop('The job has ended.');
    else live.textContent = 'Reconnecting…';
  });
  source.addEventListener('open', () => { live.textContent = 'Live: updates arrive as the job runs.'; });
}

function stop(message) {
  if (state.source) state.source.close();
  state.source = null;
  document.getElementById('live-state').textContent = message;
}

document.getElementById('refresh').addEventListener('click', refresh);
document.getElementById('cancel-job').addEventListener('click', async () => {
  if (!confirm('Cancel this job? Its checkpoints so far stay downloadable.')) return;
  try { render(await api('POST', `/api/jobs/${jobId}/cancel`)); toast('Cancelling…'); } catch (error) { toast(error.message); }
});
document.getElementById('retry-job').addEventListener('click', async () => {
  try {
    render(await api('POST', `/api/jobs/${jobId}/retry`));
    state.lossFileVersion = null;
    toast('Queued again; it resumes from its last checkpoint.');
    listen();
  } catch (error) { toast(error.message); }
});

document.getElementById('delete-job').addEventListener('click', async () => {
  if (!confirm('Delete this job with its LoRA, checkpoints and samples? This cannot be undone.')) return;
  try {
    await api('DELETE', `/api/jobs/${jobId}`);
    stop('Deleted.');
    window.location.assign('/jobs');
  } catch (error) { toast(error.message); }
});

let resizeTimer;
window.addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(drawLoss, 150); });
refresh().then(loadSamplePairs);
