// The dataset list: create a dataset, then open it.
import { api, showError } from './common.js';

const form = document.getElementById('new-dataset');
const errorBox = document.getElementById('form-error');

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  showError(errorBox, null);
  const name = form.elements.name.value.trim();
  if (!name) { showError(errorBox, new Error('Give the dataset a name.')); return; }
  try {
    const dataset = await api('POST', '/api/datasets', { name });
    location.assign('/datasets/' + dataset.id);
  } catch (error) {
    showError(errorBox, error);
  }
});
