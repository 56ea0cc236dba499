// The job list: rows of unfinished jobs follow their progress (polled every 5 s).
import { api, finalStates } from './common.js';

const table = document.getElementById('job-table');

async function poll() {
  if (!table || ![...table.tBodies[0].rows].some((row) => !finalStates.includes(row.dataset.status))) return;
  try {
    const { jobs } = await api('GET', '/api/jobs');
    for (const job of jobs) {
      const row = table.querySelector(`tr[data-job-id="${job.id}"]`);
      if (!row) continue;
      row.dataset.status = job.status;
      const badge = row.querySelector('[data-field=status]');
      badge.textContent = job.status;
      badge.className = `badge status-${job.status}`;
      const progress = job.progress || {};
      const cell = row.querySelector('[data-field=progress]');
      if (progress.totalSteps) {
        const bar = cell.querySelector('progress') || document.createElement('progress');
        bar.max = progress.totalSteps;
        bar.value = progress.step || 0;
        bar.setAttribute('aria-label', `Steps of job ${job.id.slice(0, 8)}`);
        cell.replaceChildren(bar, ` ${progress.step || 0}/${progress.totalSteps}`);
      }
      if (typeof progress.loss === 'number') row.querySelector('[data-field=loss]').textContent = progress.loss.toFixed(4);
    }
  } catch (error) { /* next round */ }
  setTimeout(poll, 5000);
}

setTimeout(poll, 5000);
