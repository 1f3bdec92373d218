// The web page in a real browser: Debian's chromium driven headless by playwright-core,
// against a real `undertone run` replaying a clip in real time, with audio paced by a
// private PulseAudio null sink reached through ALSA (as tests/live_pulse.rs does).
//
// Walks what a venue's staff would do: set the password with the setup code, watch the
// dashboard, change settings, dislike → pick an option (then checks the engine's report:
// the change reaches the music within two bars), upload a good and a bad template, a bad
// config restore; then restarts the box and checks the login and the settings survived.
// Screenshots at phone (390×844) and desktop (1280×800) size go to docs/images/.
//
// Run: npm test (in tests/web), after `cargo build -p undertone`. UNDERTONE_BIN overrides
// the binary; KEEP=1 keeps the temporary folder.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const bin = process.env.UNDERTONE_BIN ||
  path.join(process.env.CARGO_TARGET_DIR || path.join(root, 'target'), 'debug/undertone');
const shots = path.join(root, 'docs/images');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'undertone-web-'));
const PASSWORD = 'venue-pass-2024';
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 800 };
const CHROMIUM_FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];
// Generous bounds for a loaded 2-core CI machine; each wait ends as soon as its condition holds.
const START_TIMEOUT_MS = 60_000;
const BARS_TIMEOUT_MS = 90_000;

const procs = [];
after(() => {
  for (const p of procs) { try { p.kill('SIGKILL'); } catch (_) { /* gone */ } }
  if (!process.env.KEEP) fs.rmSync(tmp, { recursive: true, force: true });
});

function waitFor(cond, what, timeoutMs = START_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      let v;
      try { v = cond(); } catch (_) { v = undefined; }
      if (v) return resolve(v);
      if (Date.now() - t0 > timeoutMs) return reject(new Error('timed out waiting for ' + what));
      setTimeout(tick, 50);
    };
    tick();
  });
}

// ---- the rig: PulseAudio null sink, ALSA PCM definitions, a long clip ----
function startPulse() {
  const dir = path.join(tmp, 'pulse');
  fs.mkdirSync(path.join(dir, 'run'), { recursive: true });
  const socket = path.join(dir, 'native');
  const conf = path.join(dir, 'pa.conf');
  // norewinds=1: without it the first blocking write stalls ~1.85 s (RECIPES.md).
  fs.writeFileSync(conf, 'load-module module-null-sink sink_name=nullsink rate=48000 channels=2 norewinds=1\n' +
    `load-module module-native-protocol-unix auth-anonymous=1 socket=${socket}\n`);
  const p = spawn('pulseaudio', ['-n', '-F', conf, '--exit-idle-time=-1', '--daemonize=no', '--log-target=stderr'],
    { env: { ...process.env, XDG_RUNTIME_DIR: path.join(dir, 'run'), HOME: dir }, stdio: 'ignore' });
  procs.push(p);
  const alsaHome = path.join(tmp, 'xdg');
  fs.mkdirSync(path.join(alsaHome, 'alsa'), { recursive: true });
  fs.writeFileSync(path.join(alsaHome, 'alsa/asoundrc'),
    'pcm.utpulse {\n @args [ SERVER ]\n @args.SERVER { type string }\n type pulse\n device "nullsink"\n server $SERVER\n handle_underrun true\n}\n');
  return { socket, alsaHome, pcm: `utpulse:SERVER="unix:${socket}"` };
}

function longClip() {
  // The trailer three times over (stream copy, instant): the run outlives the test.
  const out = path.join(tmp, 'trailer3.mp4');
  const r = spawnSync('ffmpeg', ['-v', 'error', '-stream_loop', '2', '-i', path.join(root, 'testdata/clips/trailer_bbb.mp4'),
    '-c', 'copy', '-y', out]);
  assert.equal(r.status, 0, String(r.stderr));
  return out;
}

const pulse = startPulse();
const clip = longClip();
const cfgPath = path.join(tmp, 'config.toml');
const dataDir = path.join(tmp, 'data');
const reportPath = path.join(tmp, 'report.json');
const toml = (s) => "'" + s + "'";
fs.writeFileSync(cfgPath, [
  `source = ${toml('file:' + clip)}`,
  'realtime = true',
  `audio_device = ${toml(pulse.pcm)}`,
  'listen = "127.0.0.1:0"',
  `report = ${toml(reportPath)}`,
  '[web]',
  `data_dir = ${toml(dataDir)}`,
  '',
].join('\n'));

// ---- the box ----
async function startBox() {
  await waitFor(() => fs.existsSync(pulse.socket), 'pulseaudio');
  const p = spawn(bin, ['run', '--config', cfgPath], {
    env: { ...process.env, XDG_CONFIG_HOME: pulse.alsaHome, RUST_LOG: 'info', NOTIFY_SOCKET: '', WATCHDOG_USEC: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  procs.push(p);
  let log = '';
  p.stderr.on('data', (d) => { log += d; });
  const url = await waitFor(() => {
    if (p.exitCode !== null) throw new Error('undertone exited:\n' + log);
    const m = log.match(/on http:\/\/([0-9.:]+)\/metrics/);
    return m && `http://${m[1]}`;
  }, 'the web server to listen');
  return { p, url, log: () => log };
}

async function stopBox(box) {
  box.p.kill('SIGTERM');
  await waitFor(() => box.p.exitCode !== null || box.p.signalCode !== null, 'undertone to stop', 20_000);
}

const report = () => JSON.parse(fs.readFileSync(reportPath, 'utf8'));

async function browser() {
  const profile = fs.mkdtempSync(path.join(tmp, 'chromium-'));
  return chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_FLAGS, viewport: PHONE,
    deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  });
}

async function shot(page, name, fullPage = false) {
  fs.mkdirSync(shots, { recursive: true });
  const file = path.join(shots, `web-${name}.png`);
  if (!fullPage) return page.screenshot({ path: file });
  // The whole page as on a phone tall enough to show it: the fixed tab bar stays at the
  // bottom (a plain full-page capture leaves it floating one screen down).
  const size = page.viewportSize();
  const height = await page.evaluate(() => document.documentElement.scrollHeight);
  await page.setViewportSize({ width: size.width, height: Math.max(size.height, height) });
  await page.waitForTimeout(300);
  await page.screenshot({ path: file });
  await page.setViewportSize(size);
}

/// A bad template: a real WAV (the format is refused).
function wavFile() {
  const f = path.join(tmp, 'loop.wav');
  const r = spawnSync('sox', ['-n', '-r', '48000', '-c', '2', '-b', '16', f, 'synth', '1', 'sine', '440']);
  assert.equal(r.status, 0, String(r.stderr));
  return f;
}

test('setup, dashboard, settings, refine, templates, restore; then a restart keeps password and settings', { timeout: 600_000 }, async () => {
  let box = await startBox();
  const ctx = await browser();
  try {
    await walk(ctx, box);
  } finally {
    await ctx.close();
  }
});

async function walk(ctx, box) {
  const page = ctx.pages()[0] || await ctx.newPage();

  // Setup with the one-time code from the data folder.
  await page.goto(box.url + '/');
  await page.locator('#auth-title').filter({ hasText: 'set a password' }).waitFor();
  await shot(page, 'phone-setup');
  const code = fs.readFileSync(path.join(dataDir, 'setup-code.txt'), 'utf8').trim();
  await page.fill('#code', '1111-2222-3333-4444');
  await page.fill('#password', PASSWORD);
  await page.fill('#password2', PASSWORD);
  await page.click('#auth-submit');
  await page.locator('#auth-error').filter({ hasText: 'wrong setup code' }).waitFor();
  await page.fill('#code', code);
  await page.click('#auth-submit');
  await page.locator('#page-dashboard').waitFor({ state: 'visible' });
  assert.ok(!fs.existsSync(path.join(dataDir, 'setup-code.txt')), 'the code is spent');

  // The engine plays: bars advance on the dashboard, the snapshot shows the picture.
  await page.waitForFunction(() => Number(document.getElementById('now-bar').textContent) >= 3, null, { timeout: BARS_TIMEOUT_MS });
  await page.locator('.snap.live').waitFor({ timeout: BARS_TIMEOUT_MS });
  await page.waitForFunction(() => document.getElementById('dev-audio').textContent === 'running');

  // Settings: a bad value is refused with the key named; a good one is saved.
  await page.click('a[data-page=settings]');
  await page.waitForFunction(() => document.getElementById('s-source').value.startsWith('file:'));
  await page.fill('#s-fps', '500');
  await page.click('#settings-save');
  await page.locator('#settings-error').filter({ hasText: '`fps`' }).waitFor();
  assert.match(await page.textContent('#settings-error'), /1 to 120/);
  await page.fill('#s-fps', '25');
  await page.selectOption('#s-mood', 'calm');
  await page.locator('#s-volume').fill('-6');
  await page.check('#s-sched');
  await page.fill('#s-start', '00:00');
  await page.fill('#s-stop', '23:59');
  await page.click('#settings-save');
  await page.locator('#settings-ok').filter({ hasText: 'Saved' }).waitFor();
  await shot(page, 'phone-settings');
  assert.match(fs.readFileSync(cfgPath, 'utf8'), /mood = "calm"/);

  // Refine: dislike → the options → one of them → the report shows it within two bars.
  await page.click('a[data-page=refine]');
  await page.click('#dislike');
  const chip = page.locator('#options .chip').first();
  await chip.waitFor({ timeout: BARS_TIMEOUT_MS });
  await shot(page, 'phone-refine');
  const names = await page.$$eval('#options .chip', (bs) => bs.map((b) => b.dataset.option));
  const pick = names.find((n) => n.startsWith('genre=')) || names.find((n) => n === 'calmer') || names[0];
  const barAtClick = Number(await page.evaluate(async () => (await (await fetch('/api/status')).json()).bar));
  await page.click(`#options .chip[data-option="${pick}"]`);
  await page.locator('#refine-msg').filter({ hasText: 'from the next bar' }).waitFor();
  await page.waitForFunction(() => !document.getElementById('undo').disabled, null, { timeout: BARS_TIMEOUT_MS });
  // Wait until the report (rewritten every few seconds) has bars past the applied command.
  const applied = await waitFor(() => {
    const m = report().music;
    // The engine logs commands in Rust's Debug form (`Apply(Genre(Pop))`); only one option is applied here.
    const c = m && m.commands.find((c) => c.command.startsWith('Apply('));
    return c && m.bars.some((b) => b.index >= c.bar + 1) && { c, bars: m.bars };
  }, 'the option in the report', BARS_TIMEOUT_MS);
  const lag = applied.c.bar - barAtClick;
  console.log(`refine: ${pick} clicked at bar ${barAtClick}, applied from bar ${applied.c.bar} (${lag} bars later)`);
  assert.ok(lag <= 2, `option ${pick} reached bar ${applied.c.bar}, clicked at ${barAtClick}`);
  const before = applied.bars.filter((b) => b.index < applied.c.bar).slice(-2);
  const afterBars = applied.bars.filter((b) => b.index >= applied.c.bar).slice(0, 2);
  const sig = (b) => `${b.template}|${b.energy.toFixed(2)}|${b.density_class}`;
  assert.ok(afterBars.length && before.length, 'bars on both sides');
  assert.notEqual(sig(afterBars[0]), sig(before[before.length - 1]), `the music changed at bar ${applied.c.bar}`);

  // Templates: a good upload (a real loop with its pattern) and a bad one (a WAV).
  await page.click('a[data-page=templates]');
  await page.locator('#tpl-list li').first().waitFor();
  const idx = JSON.parse(fs.readFileSync(path.join(root, 'templates/index.json'), 'utf8'));
  const t = idx.templates.find((x) => x.id === 'ambient_I-V-vi-IV_l1') || idx.templates[0];
  await page.fill('#u-id', 'venue-loop');
  await page.selectOption('#u-prog', t.progression);
  await page.selectOption('#u-style', t.style);
  await page.selectOption('#u-mood', t.mood);
  await page.fill('#u-tempo', String(t.tempo_bpm));
  await page.fill('#u-layer', String(t.layer));
  await page.fill('#u-energy', String(t.energy));
  await page.fill('#u-instruments', t.instruments.join(', '));
  await page.setInputFiles('#u-audio', wavFile());
  await page.setInputFiles('#u-midi', path.join(root, 'templates', t.midi));
  await page.click('#u-submit');
  await page.locator('#upload-error').filter({ hasText: 'Rejected — format' }).waitFor();
  assert.match(await page.textContent('#upload-error'), /WAV/);
  await page.setInputFiles('#u-audio', path.join(root, 'templates', t.audio));
  await page.setInputFiles('#u-midi', path.join(root, 'templates', t.midi));
  await page.click('#u-submit');
  await page.locator('#upload-ok').filter({ hasText: 'Uploaded venue-loop' }).waitFor();
  await page.locator('#tpl-list li[data-id="venue-loop"]').waitFor();
  assert.ok(fs.existsSync(path.join(dataDir, 'templates/audio/venue-loop.ogg')));
  await page.fill('#tpl-filter', 'venue');
  await shot(page, 'phone-templates');
  await page.fill('#tpl-filter', '');

  // System: a bad restore changes nothing and says why; the log is there.
  await page.click('a[data-page=system]');
  await page.locator('#sys-version').filter({ hasText: /\d+\.\d+/ }).waitFor();
  const cfgBefore = fs.readFileSync(cfgPath, 'utf8');
  const bad = path.join(tmp, 'bad-backup.toml');
  fs.writeFileSync(bad, 'fps = 30\nvolume = 11\n');
  await page.setInputFiles('#restore', bad);
  await page.locator('#restore-error').filter({ hasText: 'nothing changed' }).waitFor();
  assert.match(await page.textContent('#restore-error'), /volume/);
  assert.equal(fs.readFileSync(cfgPath, 'utf8'), cfgBefore);
  await shot(page, 'phone-system');

  // The dashboard again, its plot now full: a scene cut of the trailer (the first comes 24.7 s
  // in) reaches the plot as a red mark, after the frames that confirmed it.
  await page.click('a[data-page=dashboard]');
  await page.waitForFunction(() => Number(document.getElementById('plot').dataset.cuts || 0) >= 1, null, { timeout: BARS_TIMEOUT_MS });
  await shot(page, 'phone-dashboard', true);
  // Desktop size.
  await page.setViewportSize(DESKTOP);
  await page.waitForTimeout(500); // the plot redraws at the new size with the next update
  await shot(page, 'desktop-dashboard');
  await page.click('a[data-page=templates]');
  await page.locator('#tpl-list li').first().waitFor();
  await shot(page, 'desktop-templates');
  await page.setViewportSize(PHONE);

  // Restart: the password and the settings survive; the old session does not.
  await stopBox(box);
  box = await startBox();
  await page.goto(box.url + '/');
  await page.locator('#auth-title').filter({ hasText: 'Log in' }).waitFor();
  await page.fill('#password', 'wrong-password');
  await page.click('#auth-submit');
  await page.locator('#auth-error').filter({ hasText: 'wrong password' }).waitFor();
  await page.fill('#password', PASSWORD);
  await page.click('#auth-submit');
  await page.locator('#page-dashboard').waitFor({ state: 'visible' });
  await page.click('a[data-page=settings]');
  await page.waitForFunction(() => document.getElementById('s-fps').value === '25');
  assert.equal(await page.inputValue('#s-mood'), 'calm');
  assert.equal(await page.inputValue('#s-volume'), '-6');
  await page.click('a[data-page=templates]');
  await page.locator('#tpl-list li[data-id="venue-loop"]').waitFor();
  await stopBox(box);
}
