// undertone's web page: one file, no framework, no CDN. Talks to /auth/* and /api/*
// (see docs/ref/api.md); live data comes over server-sent events from /api/events.
'use strict';

const $ = (id) => document.getElementById(id);
const PAGES = ['dashboard', 'refine', 'settings', 'templates', 'system'];
// Plot window and the snapshot refresh (a few frames a second is enough to see the room).
const PLOT_SECONDS = 30;
const SNAPSHOT_MS = 333;

const state = { csrf: null, status: null, features: [], bars: [], events: null, snapTimer: null, snapUrl: null };

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body, opts = {}) {
  const headers = {};
  let payload;
  if (body instanceof FormData) {
    payload = body;
  } else if (typeof body === 'string' && opts.type) {
    headers['Content-Type'] = opts.type; payload = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json'; payload = JSON.stringify(body);
  }
  if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
  const r = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', cache: 'no-store' });
  const ct = r.headers.get('content-type') || '';
  const data = ct.includes('application/json') ? await r.json() : await r.text();
  if (!r.ok) {
    if (r.status === 401 && path.startsWith('/api/')) { showAuth(false); }
    const msg = (data && data.error) || (typeof data === 'string' && data.trim()) || `HTTP ${r.status}`;
    throw new HttpError(r.status, msg);
  }
  return data;
}

function say(id, text) { const el = $(id); if (el) el.textContent = text || ''; }

// ---------- auth ----------
let setupMode = false;
function showAuth(setup) {
  setupMode = setup;
  stopLive();
  $('tabs').hidden = true;
  for (const p of PAGES) $('page-' + p).hidden = true;
  $('page-auth').hidden = false;
  $('auth-title').textContent = setup ? 'Welcome — set a password' : 'Log in';
  $('auth-help').textContent = setup
    ? 'Enter the setup code from the box\u2019s log or from setup-code.txt in its data folder, then choose the admin password.'
    : 'Enter the admin password of this box.';
  $('code-row').hidden = !setup;
  $('password2-row').hidden = !setup;
  $('password').autocomplete = setup ? 'new-password' : 'current-password';
  $('auth-submit').textContent = setup ? 'Set password' : 'Log in';
  say('auth-error', '');
}

$('auth-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  say('auth-error', '');
  const password = $('password').value;
  try {
    let r;
    if (setupMode) {
      if (password !== $('password2').value) { say('auth-error', 'The two passwords differ.'); return; }
      r = await api('POST', '/auth/setup', { code: $('code').value, password });
    } else {
      r = await api('POST', '/auth/login', { password });
    }
    state.csrf = r.csrf;
    $('password').value = ''; $('password2').value = '';
    startApp();
  } catch (err) { say('auth-error', err.message); }
});

// ---------- navigation ----------
function currentPage() {
  const h = location.hash.replace('#', '');
  return PAGES.includes(h) ? h : 'dashboard';
}

function show(page) {
  $('page-auth').hidden = true;
  $('tabs').hidden = false;
  for (const p of PAGES) $('page-' + p).hidden = p !== page;
  for (const a of document.querySelectorAll('.tabs a')) a.classList.toggle('active', a.dataset.page === page);
  if (page === 'dashboard') startSnapshots(); else stopSnapshots();
  if (page === 'settings') loadSettings();
  if (page === 'templates') loadTemplates();
  if (page === 'system') loadSystem();
  if (page === 'refine') loadOptions();
  if (page === 'dashboard') drawPlot();
}
window.addEventListener('hashchange', () => { if (state.csrf) show(currentPage()); });

async function boot() {
  try {
    const s = await api('GET', '/auth/state');
    if (s.setup_needed) return showAuth(true);
    if (!s.logged_in) return showAuth(false);
    state.csrf = s.csrf;
    startApp();
  } catch (err) { showAuth(false); say('auth-error', err.message); }
}

function startApp() {
  startLive();
  show(currentPage());
}

// ---------- live data ----------
function startLive() {
  stopLive();
  const es = new EventSource('/api/events');
  es.addEventListener('update', (ev) => {
    const d = JSON.parse(ev.data);
    if (d.status) onStatus(d.status);
    if (d.features && d.features.length) {
      // A cut comes after the frames that confirmed it, with its own earlier time.
      state.features.push(...d.features);
      state.features.sort((a, b) => a.t - b.t);
    }
    // A bar replaces the one of its index and all later ones (a cut replans the bars ahead).
    for (const b of d.bars || []) { state.bars = state.bars.filter((x) => x.bar < b.bar); state.bars.push(b); }
    trimSeries();
    if (currentPage() === 'dashboard') drawPlot();
  });
  es.onerror = () => { setHealth('missing', 'reconnecting'); };
  state.events = es;
}
function stopLive() { if (state.events) { state.events.close(); state.events = null; } stopSnapshots(); }

function trimSeries() {
  const last = Math.max(lastT(state.features), lastT(state.bars));
  const from = last - PLOT_SECONDS - 5;
  state.features = state.features.filter((p) => p.t >= from);
  state.bars = state.bars.filter((p) => p.t >= from);
}
const lastT = (a) => (a.length ? a[a.length - 1].t : 0);

function setHealth(cls, text) {
  const h = $('health');
  h.className = 'health ' + cls;
  say('health-text', text);
}

const fmtDb = (v) => (v === null || v === undefined || !isFinite(v) ? '−∞ dB' : v.toFixed(1) + ' dB');
// dBFS → 0..100 % over a 60 dB scale (the range a level meter shows usefully).
const dbPct = (v) => (v === null || v === undefined || !isFinite(v) ? 0 : Math.max(0, Math.min(100, (v + 60) / 60 * 100)));

const PITCHES = ['C', 'C♯', 'D', 'E♭', 'E', 'F', 'F♯', 'G', 'A♭', 'A', 'B♭', 'B'];
// The engine names the key as `C major` or as its Rust form `Key { tonic: 0, mode: Major }`.
function keyName(k) {
  if (!k) return '—';
  const m = /tonic:\s*(\d+),\s*mode:\s*(\w+)/.exec(k);
  return m ? `${PITCHES[Number(m[1]) % 12]} ${m[2].toLowerCase()}` : k;
}

function onStatus(s) {
  state.status = s;
  const audio = s.audio_now || s.audio;
  setHealth(audio, audio === 'running' ? 'playing' : 'audio ' + audio);
  say('now-genre', s.genre || '—');
  say('now-mood', s.mood); say('now-instrument', s.instrument);
  say('now-tempo', s.tempo_bpm ? s.tempo_bpm.toFixed(0) + ' BPM' : '—');
  say('now-bar', String(s.bar)); say('now-section', String(s.section)); say('now-key', keyName(s.key));
  $('now-energy').style.width = Math.round((s.energy || 0) * 100) + '%';
  say('now-template', s.template ? 'template ' + s.template : '');
  $('lvl-rms').style.width = dbPct(s.level_rms_dbfs) + '%';
  $('lvl-peak').style.width = dbPct(s.level_peak_dbfs) + '%';
  say('lvl-rms-t', fmtDb(s.level_rms_dbfs)); say('lvl-peak-t', fmtDb(s.level_peak_dbfs));
  for (const [id, v] of [['dev-camera', s.camera_now || s.camera], ['dev-audio', audio]]) {
    $(id).textContent = v; $(id).className = 'state ' + v;
  }
  say('dev-underruns', String(s.underruns));
  say('dev-headroom', (s.headroom_ms || 0).toFixed(0) + ' ms');
  say('dev-fps', (s.fps || 0).toFixed(1));
  say('dev-volume', fmtDb(s.volume_db));
  renderRefine(s);
}

// ---------- plot ----------
function drawPlot() {
  const c = $('plot');
  if (!c || c.offsetParent === null) return;
  const dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth, h = c.clientHeight;
  if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
  const g = c.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.documentElement);
  const col = (n) => css.getPropertyValue(n).trim();
  const end = Math.max(lastT(state.features), lastT(state.bars), PLOT_SECONDS);
  const t0 = end - PLOT_SECONDS;
  const x = (t) => ((t - t0) / PLOT_SECONDS) * w;
  const top = h * 0.58, gap = 8;
  g.strokeStyle = col('--line'); g.lineWidth = 1;
  g.beginPath(); g.moveTo(0, top + gap / 2); g.lineTo(w, top + gap / 2); g.stroke();
  g.fillStyle = col('--muted'); g.font = '11px system-ui';
  g.fillText('picture', 4, 12); g.fillText('music', 4, top + gap + 12);
  const fs = state.features.filter((p) => p.t >= t0);
  const maxSpeed = Math.max(0.05, ...fs.map((p) => p.speed));
  // Cuts: full-height red lines in the picture lane.
  g.strokeStyle = col('--cut'); g.lineWidth = 2;
  let cuts = 0;
  for (const p of fs) if (p.cut) { cuts++; g.beginPath(); g.moveTo(x(p.t), 0); g.lineTo(x(p.t), top); g.stroke(); }
  c.dataset.cuts = String(cuts); // what the plot shows, for the browser test
  const line = (key, color, scale) => {
    g.strokeStyle = color; g.lineWidth = 1.8; g.beginPath();
    fs.filter((p) => !p.cut).forEach((p, i) => { const y = top - 4 - (p[key] / scale) * (top - 18); if (i) g.lineTo(x(p.t), y); else g.moveTo(x(p.t), y); });
    g.stroke();
  };
  line('speed', col('--speed'), maxSpeed);
  line('saliency', col('--sal'), 1);
  // Bars: note count as steps, section starts as violet lines.
  const bs = state.bars.filter((b) => b.t >= t0 - 10);
  const maxNotes = Math.max(8, ...bs.map((b) => b.notes));
  const lane = h - (top + gap) - 4;
  bs.forEach((b, i) => {
    const next = i + 1 < bs.length ? bs[i + 1].t : b.t + (state.status && state.status.tempo_bpm ? 240 / state.status.tempo_bpm : 2);
    const bh = (b.notes / maxNotes) * (lane - 16);
    g.fillStyle = col('--notes'); g.globalAlpha = 0.35 + 0.65 * (b.strength_class / 7);
    g.fillRect(x(b.t) + 1, h - 4 - bh, Math.max(1, x(next) - x(b.t) - 2), bh);
    g.globalAlpha = 1;
    if (b.section_start) {
      g.strokeStyle = col('--sect'); g.lineWidth = 2; g.setLineDash([4, 3]);
      g.beginPath(); g.moveTo(x(b.t), top + gap); g.lineTo(x(b.t), h); g.stroke(); g.setLineDash([]);
    }
  });
  if (!fs.length && !bs.length) { g.fillStyle = col('--muted'); g.fillText('waiting for the engine…', w / 2 - 60, h / 2); }
}
window.addEventListener('resize', () => drawPlot());

// ---------- snapshot ----------
function startSnapshots() {
  if (state.snapTimer) return;
  const tick = async () => {
    try {
      const r = await fetch('/api/snapshot.png', { cache: 'no-store', credentials: 'same-origin' });
      if (r.ok) {
        const url = URL.createObjectURL(await r.blob());
        $('snapshot').src = url;
        if (state.snapUrl) URL.revokeObjectURL(state.snapUrl);
        state.snapUrl = url;
        $('snapshot').parentElement.classList.add('live');
      }
    } catch (_) { /* the next tick tries again */ }
    if (state.snapTimer) state.snapTimer = setTimeout(tick, SNAPSHOT_MS);
  };
  state.snapTimer = setTimeout(tick, 0);
}
function stopSnapshots() { if (state.snapTimer) { clearTimeout(state.snapTimer); state.snapTimer = null; } }

// ---------- refine ----------
let optionCache = [];
async function loadOptions() {
  try { const o = await api('GET', '/api/refine/options'); optionCache = o.options; renderRefine(state.status); } catch (_) {}
}
function renderRefine(s) {
  if (!s) return;
  say('refine-now', s.genre ? `${s.genre} · ${s.mood} · ${s.instrument} — bar ${s.bar}` : 'waiting for the music to start');
  $('options-box').hidden = !s.disliked;
  $('dislike').classList.toggle('on', !!s.disliked);
  $('undo').disabled = !s.undo_depth;
  $('undo').textContent = s.undo_depth ? `Undo last change (${s.undo_depth})` : 'Undo last change';
  const names = s.options || [];
  const box = $('options');
  const key = names.join('|');
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren();
  for (const n of names) {
    const d = optionCache.find((o) => o.name === n);
    const b = document.createElement('button');
    b.className = 'chip'; b.type = 'button'; b.dataset.option = n;
    b.textContent = n.replace('=', ': ').replace(/-/g, ' ');
    if (d) { const sm = document.createElement('small'); sm.textContent = d.description; b.appendChild(sm); }
    b.addEventListener('click', () => refine('/api/refine/apply', { option: n }, `“${b.firstChild.textContent}” from the next bar`));
    box.appendChild(b);
  }
  if (names.length && !names.every((n) => optionCache.some((o) => o.name === n))) loadOptions();
}
async function refine(path, body, msg) {
  say('refine-error', ''); say('refine-msg', '');
  try { await api('POST', path, body); say('refine-msg', msg); } catch (err) { say('refine-error', err.message); }
}
$('like').addEventListener('click', () => refine('/api/refine', { action: 'like' }, 'Kept — thanks!'));
$('dislike').addEventListener('click', () => refine('/api/refine', { action: 'dislike' }, 'Pick what should change.'));
$('undo').addEventListener('click', () => refine('/api/refine', { action: 'undo' }, 'The last change is undone from the next bar.'));

// ---------- settings ----------
let loadedConfig = null;
async function loadSettings() {
  say('settings-error', ''); say('settings-ok', '');
  try {
    const [{ config }, dev] = await Promise.all([api('GET', '/api/config'), api('GET', '/api/devices').catch(() => ({ cameras: [], pcms: [] }))]);
    loadedConfig = config;
    const fill = (id, items, val, label) => { const dl = $(id); dl.replaceChildren(); for (const it of items) { const o = document.createElement('option'); o.value = val(it); if (label) o.label = label(it); dl.appendChild(o); } };
    fill('cameras', dev.cameras, (c) => c);
    fill('pcms', dev.pcms, (p) => p.name, (p) => p.description);
    const c = config, m = c.music, w = c.web;
    $('s-source').value = c.source; $('s-width').value = c.width; $('s-height').value = c.height; $('s-fps').value = c.fps;
    $('s-pcm').value = c.audio_device; $('s-volume').value = w.volume_db;
    $('s-genre').value = m.genre || ''; $('s-mood').value = m.mood || ''; $('s-instrument').value = m.instrument || '';
    $('s-tempo').value = m.tempo ?? '';
    $('s-energy-auto').checked = m.energy === null || m.energy === undefined;
    $('s-energy').value = m.energy ?? 0.5;
    $('s-sched').checked = w.schedule.enabled; $('s-start').value = w.schedule.start; $('s-stop').value = w.schedule.stop;
    $('s-board').value = w.board;
    syncSettingLabels();
  } catch (err) { say('settings-error', err.message); }
}
function syncSettingLabels() {
  say('s-volume-t', $('s-volume').value + ' dB');
  $('s-energy').disabled = $('s-energy-auto').checked;
  say('s-energy-t', $('s-energy-auto').checked ? 'auto' : Number($('s-energy').value).toFixed(2));
}
for (const id of ['s-volume', 's-energy', 's-energy-auto']) $(id).addEventListener('input', syncSettingLabels);

$('settings').addEventListener('submit', async (e) => {
  e.preventDefault();
  say('settings-error', ''); say('settings-ok', '');
  if (!loadedConfig) return;
  const num = (id) => ($(id).value === '' ? NaN : Number($(id).value));
  const c = structuredClone(loadedConfig);
  c.source = $('s-source').value.trim(); c.width = num('s-width'); c.height = num('s-height'); c.fps = num('s-fps');
  c.audio_device = $('s-pcm').value.trim();
  c.music.genre = $('s-genre').value || null; c.music.mood = $('s-mood').value || null; c.music.instrument = $('s-instrument').value || null;
  c.music.tempo = $('s-tempo').value === '' ? null : num('s-tempo');
  c.music.energy = $('s-energy-auto').checked ? null : num('s-energy');
  c.web.volume_db = num('s-volume');
  c.web.schedule = { enabled: $('s-sched').checked, start: $('s-start').value, stop: $('s-stop').value };
  c.web.board = $('s-board').value.trim();
  for (const [k, v] of [['width', c.width], ['height', c.height], ['fps', c.fps]]) {
    if (!Number.isFinite(v)) { say('settings-error', `${k}: give a number`); return; }
  }
  try {
    const r = await api('PUT', '/api/config', c);
    loadedConfig = r.config;
    say('settings-ok', 'Saved. Applied from the next bar; devices reopen if they changed.');
  } catch (err) { say('settings-error', err.message); }
});

// ---------- templates ----------
let templates = [];
async function loadTemplates() {
  try { templates = await api('GET', '/api/templates'); renderTemplates(); } catch (err) { say('upload-error', err.message); }
}
function renderTemplates() {
  const q = $('tpl-filter').value.trim().toLowerCase();
  const list = $('tpl-list');
  list.replaceChildren();
  const shown = templates.filter((t) => !q || [t.id, t.style, t.mood, t.progression, t.source].join(' ').toLowerCase().includes(q));
  say('tpl-count', `${shown.length} of ${templates.length}`);
  for (const t of shown) {
    const li = document.createElement('li');
    li.dataset.id = t.id;
    const info = document.createElement('div');
    const id = document.createElement('div'); id.className = 'id'; id.textContent = t.id;
    if (t.source === 'user') { const b = document.createElement('span'); b.className = 'badge'; b.textContent = 'uploaded'; id.appendChild(b); }
    const meta = document.createElement('div'); meta.className = 'meta';
    meta.textContent = `${t.style} · ${t.mood} · ${t.tempo_bpm} BPM · ${t.progression} · layer ${t.layer}`;
    info.append(id, meta);
    const acts = document.createElement('div'); acts.className = 'acts';
    const play = document.createElement('button'); play.type = 'button'; play.textContent = '▶'; play.title = 'Preview'; play.setAttribute('aria-label', 'Preview ' + t.id);
    play.addEventListener('click', () => { const p = $('tpl-player'); p.hidden = false; p.src = `/api/templates/${encodeURIComponent(t.id)}/audio`; p.play().catch(() => {}); });
    acts.appendChild(play);
    if (t.source === 'user') {
      const del = document.createElement('button'); del.type = 'button'; del.className = 'danger'; del.textContent = 'Delete';
      del.addEventListener('click', async () => {
        if (del.dataset.armed !== '1') { del.dataset.armed = '1'; del.textContent = 'Sure?'; return; }
        try { await api('DELETE', `/api/templates/${encodeURIComponent(t.id)}`); say('upload-ok', `Deleted ${t.id}.`); loadTemplates(); } catch (err) { say('upload-error', err.message); }
      });
      acts.appendChild(del);
    }
    li.append(info, acts);
    list.appendChild(li);
  }
}
$('tpl-filter').addEventListener('input', renderTemplates);

$('upload').addEventListener('submit', async (e) => {
  e.preventDefault();
  say('upload-error', ''); say('upload-ok', '');
  const audio = $('u-audio').files[0], midi = $('u-midi').files[0];
  if (!audio || !midi) { say('upload-error', 'Choose the audio file and the MIDI pattern.'); return; }
  const meta = {
    id: $('u-id').value.trim(), style: $('u-style').value, mood: $('u-mood').value,
    energy: Number($('u-energy').value), tempo_bpm: Number($('u-tempo').value), progression: $('u-prog').value,
    layer: Number($('u-layer').value), instruments: $('u-instruments').value.split(',').map((s) => s.trim()).filter(Boolean),
  };
  const fd = new FormData();
  fd.append('meta', JSON.stringify(meta));
  fd.append('audio', audio, audio.name);
  fd.append('midi', midi, midi.name);
  $('u-submit').disabled = true;
  try {
    const t = await api('POST', '/api/templates', fd);
    say('upload-ok', `Uploaded ${t.id}; the engine uses it from the next section.`);
    $('upload').reset();
    loadTemplates();
  } catch (err) { say('upload-error', 'Rejected — ' + err.message); }
  $('u-submit').disabled = false;
});

// ---------- system ----------
function fmtUptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + ' d ' : '') + (h ? h + ' h ' : '') + m + ' min';
}
async function loadSystem() {
  try {
    const s = await api('GET', '/api/system');
    say('sys-version', s.firmware); say('sys-uptime', fmtUptime(s.uptime_s));
    say('sys-config', s.config_path); say('sys-data', s.data_dir);
    const pre = $('logs');
    pre.textContent = s.logs ? s.logs.slice(-200).join('\n') : 'The log goes to the system journal: journalctl -u undertone';
    pre.scrollTop = pre.scrollHeight;
  } catch (err) { say('sys-msg', err.message); }
}
$('restore').addEventListener('change', async () => {
  say('restore-error', ''); say('restore-ok', '');
  const f = $('restore').files[0];
  if (!f) return;
  try {
    await api('POST', '/api/config/restore', await f.text(), { type: 'application/toml' });
    say('restore-ok', `Restored from ${f.name}.`);
  } catch (err) { say('restore-error', `${f.name} was not restored; nothing changed. ${err.message}`); }
  $('restore').value = '';
});
$('pw-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  say('pw-error', ''); say('pw-ok', '');
  try {
    const r = await api('POST', '/api/system/password', { current: $('pw-current').value, new: $('pw-new').value });
    state.csrf = r.csrf; $('pw-form').reset();
    say('pw-ok', 'Password changed. Other browsers are logged out.');
  } catch (err) { say('pw-error', err.message); }
});
$('restart').addEventListener('click', async () => {
  const b = $('restart');
  if (b.dataset.armed !== '1') { b.dataset.armed = '1'; b.textContent = 'Tap again to restart'; return; }
  b.dataset.armed = ''; b.textContent = 'Restart';
  try { await api('POST', '/api/system/restart'); say('sys-msg', 'Restarting… the page reconnects by itself.'); } catch (err) { say('sys-msg', err.message); }
});
$('logout').addEventListener('click', async () => {
  try { await api('POST', '/auth/logout'); } catch (_) {}
  state.csrf = null; showAuth(false);
});

boot();
