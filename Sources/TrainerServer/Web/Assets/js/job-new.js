// The new-training form: the preset's defaults, sample pairs picked from the dataset's samples,
// a time (and cost) estimate, and the "Train Qwen Image Edit 2509" button.
import { api, el, formatDuration, samplesOf, showError } from './common.js';

const form = document.getElementById('job-form');
const picker = document.getElementById('pair-picker');
const errorBox = document.getElementById('form-error');
const details = document.getElementById('form-details');
const maximumPairs = 4;
const shownAtFirst = 48;
let samples = [];

function checkedPairs() {
  return [...picker.querySelectorAll('input[type=checkbox]:checked')].map((box) => box.value);
}

function updatePairs() {
  const picked = checkedPairs();
  for (const box of picker.querySelectorAll('input[type=checkbox]')) box.disabled = !box.checked && picked.length >= maximumPairs;
  document.getElementById('pairs-count').textContent = `${picked.length} of at most ${maximumPairs} picked` + (picked.length ? ': ' + picked.join(', ') : ' (none: no sample images are made)');
}

function pairCard(datasetId, sample, checked) {
  const id = `pair-${sample.index}`;
  const thumb = (role, label) => el('img', { src: `/api/datasets/${datasetId}/samples/${encodeURIComponent(sample.stem)}/${role}`, alt: `${label} of ${sample.stem}`, loading: 'lazy' });
  return el('div', { className: 'pair-card' },
    el('input', { type: 'checkbox', id, name: 'samplePairs', value: sample.stem, checked }),
    el('label', { for: id },
      el('span', { className: 'pair-card-images' }, sample.control ? thumb(sample.control, 'Control') : null, thumb('target', 'Target')),
      el('span', { className: 'stem break', text: sample.stem }),
      el('span', { className: 'caption-preview', text: sample.caption || '(default caption)' })));
}

function renderPicker(datasetId, limit) {
  picker.replaceChildren(...samples.slice(0, limit).map((sample) => pairCard(datasetId, sample, sample.index < 2)));
  if (samples.length > limit) {
    picker.append(el('button', { type: 'button', className: 'small', text: `Show all ${samples.length} samples`, onclick: () => {
      const picked = new Set(checkedPairs());
      renderPicker(datasetId, samples.length);
      for (const box of picker.querySelectorAll('input[type=checkbox]')) box.checked = picked.has(box.value);
      updatePairs();
    } }));
  }
  updatePairs();
}

async function loadDataset() {
  const datasetId = form.elements.datasetId.value;
  const stateText = document.getElementById('dataset-state');
  picker.replaceChildren();
  samples = [];
  if (!datasetId) { stateText.textContent = 'Create a dataset first.'; return; }
  try {
    const dataset = await api('GET', `/api/datasets/${datasetId}`);
    // Another dataset was chosen while this one loaded: its answer wins.
    if (form.elements.datasetId.value !== datasetId) return;
    samples = samplesOf(dataset.files).filter((sample) => sample.target).map((sample, index) => ({
      stem: sample.stem, index, control: sample.controls[0] ? 'control_1' : null, caption: sample.caption ? sample.caption.caption : null,
    }));
    stateText.textContent = dataset.sound ? `Ready: ${dataset.sampleCount} samples.` : `Not ready: ${dataset.errorCount} problem(s) to fix on the dataset page first.`;
    renderPicker(datasetId, shownAtFirst);
  } catch (error) {
    if (form.elements.datasetId.value === datasetId) stateText.textContent = error.message;
  }
}

// The server's estimate (GET /api/estimate): learned from its completed runs of this preset and
// profile when it has some, assumed otherwise; the basis is shown beside it.
let estimateTimer = null;
let estimateAsked = 0;
function updateEstimate() {
  clearTimeout(estimateTimer);
  estimateTimer = setTimeout(async () => {
    const steps = Number(form.elements.steps.value);
    const profile = form.querySelector('input[name=profile]:checked');
    const preset = form.querySelector('input[name=preset]:checked');
    const output = document.getElementById('estimate');
    if (!Number.isInteger(steps) || steps < 1 || !profile) { output.textContent = ''; return; }
    const asked = ++estimateAsked;
    const query = new URLSearchParams({ steps: String(steps), profile: profile.value });
    if (preset) query.set('preset', preset.value);
    try {
      const estimate = await api('GET', `/api/estimate?${query}`);
      if (asked !== estimateAsked) return;
      let text = `${estimate.source === 'learned' ? 'Estimate' : 'Rough estimate'}: ${formatDuration(estimate.seconds)} of GPU time`;
      if (estimate.cost !== undefined) text += `, about ${estimate.cost.toFixed(2)} at this server's GPU price`;
      output.textContent = `${text} (${estimate.basis}).`;
    } catch (error) {
      // Steps out of range: the form's own check says so on submit.
      if (asked === estimateAsked) output.textContent = '';
    }
  }, 200);
}

form.addEventListener('input', updateEstimate);
form.elements.datasetId.addEventListener('change', loadDataset);
// The button names the model it trains.
for (const choice of form.querySelectorAll('input[name=preset]')) {
  choice.addEventListener('change', () => { document.getElementById('train-button').textContent = `Train ${choice.dataset.label}`; });
}
picker.addEventListener('change', updatePairs);

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  showError(errorBox, null);
  details.replaceChildren();
  const params = {
    steps: Number(form.elements.steps.value),
    learningRate: Number(form.elements.learningRate.value),
    rank: Number(form.elements.rank.value),
    profile: form.querySelector('input[name=profile]:checked').value,
    samplePairs: checkedPairs(),
  };
  const trigger = form.elements.triggerWord.value.trim();
  if (trigger) params.triggerWord = trigger;
  const repo = form.elements.hfRepo.value.trim();
  if (repo) params.hfRepo = repo;
  const button = document.getElementById('train-button');
  button.disabled = true;
  try {
    const job = await api('POST', '/api/jobs', { datasetId: form.elements.datasetId.value, preset: form.querySelector('input[name=preset]:checked').value, params });
    location.assign('/jobs/' + job.id);
  } catch (error) {
    showError(errorBox, error);
    details.replaceChildren(...error.details.map((item) => el('li', { className: 'finding error', text: item.path ? `${item.path}: ${item.reason}` : item.reason })));
    button.disabled = false;
    errorBox.scrollIntoView({ block: 'center' });
  }
});

updateEstimate();
loadDataset();
