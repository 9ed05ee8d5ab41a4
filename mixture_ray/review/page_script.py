"""The review page's script: choices kept in the browser, progress, keys, mapping export and re-open.

Everything it shows from data goes through ``textContent`` or form values, never ``innerHTML``;
the page metadata comes from a JSON script element. Choices are kept in ``localStorage`` under a
key made of the clustering folder, magnification and k, so pages of other clusterings opened from
the same folder do not mix. A mapping file (the YAML this page exports, a YAML written by
``dump_mapping``, or the same keys as JSON) can be opened to restore the choices.
"""

SCRIPT = r"""
'use strict';
const meta = JSON.parse(document.getElementById('meta').textContent);
const selects = Array.from(document.querySelectorAll('select.finding'));
const sections = selects.map((s) => s.closest('.cluster'));
const indexOf = new Map(selects.map((s, i) => [s.dataset.cluster, i]));
const statusLine = document.getElementById('status');
const savedLine = document.getElementById('saved');
const storageKey = 'mixture-ray-review:' + JSON.stringify([meta.clustering, meta.magnification, meta.k]);
let current = -1;

function storage() {
  try { return window.localStorage; } catch (e) { return null; }
}

function readStored() {
  const store = storage();
  if (!store) return null;
  try { return JSON.parse(store.getItem(storageKey) || 'null'); } catch (e) { return null; }
}

function save() {
  const choices = {};
  for (const s of selects) if (s.value) choices[s.dataset.cluster] = s.value;
  const store = storage();
  try {
    if (!store) throw new Error('no storage');
    store.setItem(storageKey, JSON.stringify({choices: choices, saved: new Date().toISOString()}));
    savedLine.textContent = 'Choices kept in this browser.';
  } catch (e) {
    savedLine.textContent = 'This browser does not keep the choices: export the mapping before closing.';
  }
}

function hasOption(select, value) {
  return Array.from(select.options).some((o) => o.value === value);
}

function apply(choices) {
  const result = {applied: 0, clusters: [], findings: []};
  for (const [id, value] of Object.entries(choices || {})) {
    const i = indexOf.get(String(id));
    if (i === undefined) { result.clusters.push(String(id)); continue; }
    if (value === null || value === '' || !hasOption(selects[i], String(value))) {
      result.findings.push(id + ': ' + String(value));
      continue;
    }
    selects[i].value = String(value);
    result.applied += 1;
  }
  return result;
}

function refresh() {
  let done = 0;
  selects.forEach((s, i) => {
    const assigned = Boolean(s.value);
    if (assigned) done += 1;
    const card = document.getElementById('card-' + s.dataset.cluster);
    card.classList.toggle('done', assigned);
    card.querySelector('.card-finding').textContent = assigned ? s.value : '\u2014';
    sections[i].classList.toggle('done', assigned);
    if (assigned) sections[i].classList.remove('unassigned');
  });
  document.getElementById('progress').textContent = done + ' of ' + selects.length + ' clusters assigned';
}

function setCurrent(i, move) {
  if (!selects.length) return;
  current = Math.max(0, Math.min(selects.length - 1, i));
  sections.forEach((section, j) => {
    section.classList.toggle('current', j === current);
    document.getElementById('card-' + selects[j].dataset.cluster).classList.toggle('current', j === current);
  });
  if (move) {
    sections[current].focus({preventScroll: true});
    sections[current].scrollIntoView({block: 'start'});
  }
}

function choose(value) {
  if (current < 0) setCurrent(0, true);
  const select = selects[current];
  if (value !== '' && !hasOption(select, value)) return;
  select.value = value;
  save();
  refresh();
}

function nextUnassigned() {
  for (let step = 1; step <= selects.length; step += 1) {
    const i = (Math.max(current, -1) + step) % selects.length;
    if (!selects[i].value) { setCurrent(i, true); return; }
  }
}

function mappingYaml() {
  const lines = ['source: ' + JSON.stringify('pathologist'),
                 'clustering: ' + JSON.stringify(meta.clustering),
                 'magnification: ' + (meta.magnification === null ? 'null' : meta.magnification),
                 'k: ' + meta.k, 'clusters:'];
  const missing = [];
  for (const select of selects) {
    const id = select.dataset.cluster;
    select.closest('.cluster').classList.toggle('unassigned', !select.value);
    if (!select.value) { missing.push(id); continue; }
    lines.push('  ' + id + ': ' + JSON.stringify(select.value));
  }
  return {text: lines.join('\n') + '\n', missing: missing};
}

function stripComment(line) {
  let quote = null;
  for (let i = 0; i < line.length; i += 1) {
    const c = line[i];
    if (quote) { if (c === quote) quote = null; continue; }
    if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(line[i - 1]))) return line.slice(0, i);
  }
  return line;
}

function scalar(text) {
  const t = text.trim();
  if (t === '' || t === 'null' || t === '~') return null;
  if (t.startsWith('"')) {
    try { return JSON.parse(t.replace(/\\x([0-9a-fA-F]{2})/g, '\\u00$1')); } catch (e) {
      return t.slice(1, -1);
    }
  }
  if (t.startsWith("'")) return t.slice(1, -1).replace(/''/g, "'");
  return t;
}

function parseMapping(text) {
  const body = text.trim();
  if (body.startsWith('{')) {
    const data = JSON.parse(body);
    return {clustering: data.clustering ?? null, magnification: data.magnification,
            k: data.k ?? null, clusters: data.clusters || {}};
  }
  const out = {clustering: null, magnification: undefined, k: null, clusters: {}};
  let inClusters = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = stripComment(raw);
    if (!line.trim()) continue;
    const top = /^([A-Za-z_]+)\s*:(.*)$/.exec(line);
    if (top) {
      inClusters = top[1] === 'clusters';
      const value = scalar(top[2]);
      if (top[1] === 'clustering') out.clustering = value;
      if (top[1] === 'k') out.k = value === null ? null : Number(value);
      if (top[1] === 'magnification') out.magnification = value === null ? null : Number(value);
      continue;
    }
    const entry = /^\s+(-?\d+)\s*:(.*)$/.exec(line);
    if (inClusters && entry) out.clusters[String(Number(entry[1]))] = scalar(entry[2]);
  }
  if (!Object.keys(out.clusters).length) {
    throw new Error('no "clusters:" entries (expected an exported mapping file)');
  }
  return out;
}

async function openMapping(input) {
  const file = input.files[0];
  if (!file) return;
  let parsed;
  try { parsed = parseMapping(await file.text()); } catch (e) {
    statusLine.textContent = 'Could not read ' + file.name + ': ' + e.message;
    input.value = '';
    return;
  }
  input.value = '';
  if (parsed.k !== null && Number(parsed.k) !== meta.k) {
    statusLine.textContent = file.name + ' is a mapping for k = ' + parsed.k
      + ', this page is k = ' + meta.k + ': nothing loaded.';
    return;
  }
  const mag = parsed.magnification === undefined ? meta.magnification : parsed.magnification;
  if (mag !== meta.magnification) {
    statusLine.textContent = file.name + ' is a mapping for magnification ' + mag
      + ', this page is ' + meta.magnification + ': nothing loaded.';
    return;
  }
  const result = apply(parsed.clusters);
  save();
  refresh();
  const notes = ['Loaded ' + result.applied + ' choice(s) from ' + file.name + '.'];
  if (parsed.clustering && parsed.clustering !== meta.clustering) {
    notes.push('It names the clustering ' + parsed.clustering + '.');
  }
  if (result.clusters.length) notes.push('Not on this page: cluster(s) ' + result.clusters.join(', ') + '.');
  if (result.findings.length) notes.push('Unknown or empty finding: ' + result.findings.join('; ') + '.');
  statusLine.textContent = notes.join(' ');
}

selects.forEach((select, i) => {
  select.addEventListener('change', () => { setCurrent(i, false); save(); refresh(); });
  sections[i].addEventListener('click', () => setCurrent(i, false));
  const card = document.getElementById('card-' + select.dataset.cluster);
  card.addEventListener('click', () => setCurrent(i, false));
});

document.getElementById('open-mapping').addEventListener('change', (event) => openMapping(event.target));

document.getElementById('export').addEventListener('click', () => {
  const result = mappingYaml();
  document.getElementById('mapping-output').value = result.text;
  statusLine.textContent = result.missing.length
    ? 'Not assigned yet: cluster(s) ' + result.missing.join(', ') + ' (the mapping will be refused).'
    : 'All ' + meta.clusters + ' clusters assigned.';
  const link = document.getElementById('download');
  link.href = URL.createObjectURL(new Blob([result.text], {type: 'text/yaml'}));
  link.download = meta.filename;
  link.hidden = false;
});

document.addEventListener('keydown', (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.matches && event.target.matches('input, textarea')) return;
  const key = event.key;
  if (key === 'j') setCurrent(current + 1, true);
  else if (key === 'k') setCurrent(current < 0 ? 0 : current - 1, true);
  else if (/^[1-9]$/.test(key) && Number(key) <= meta.findings.length) choose(meta.findings[Number(key) - 1]);
  else if (key === 'o') choose('other');
  else if (key === 'x') choose('exclude');
  else if (key === 'u') choose('');
  else if (key === 'n') nextUnassigned();
  else return;
  event.preventDefault();
});

const stored = readStored();
if (stored && stored.choices) {
  const result = apply(stored.choices);
  if (result.applied) {
    savedLine.textContent = 'Restored ' + result.applied + ' choice(s) kept in this browser.';
  }
}
refresh();
const target = location.hash.startsWith('#cluster-') ? indexOf.get(location.hash.slice(9)) : undefined;
if (target !== undefined) setCurrent(target, false);
"""
