// Shared helpers for the browser tests: a tessera server as a child process,
// Debian's Chromium driven by playwright-core, and page probes.
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';

const root = new URL('..', import.meta.url).pathname;
export const BIN = process.env.TESSERA_BIN || `${root}target/debug/tessera`;
export const OUT = process.env.TESSERA_TEST_OUTPUT || `${root}test-output/browser`;
export const CANVAS = { width: 640, height: 360 };
export const CARD_RGB = [0x30, 0x36, 0x44];
mkdirSync(OUT, { recursive: true });

/// `tessera serve` on a free port. `host`: the address to listen on (and
/// gather ICE on); `netns`: run it inside that network namespace.
export async function startServer(port = 0, extra = [], { host = '127.0.0.1', netns = null } = {}) {
  const args = ['serve', '--listen', `${host}:${port}`, '--canvas', `${CANVAS.width}x${CANVAS.height}`, '--ice-address', host, ...extra];
  const [cmd, argv] = netns ? ['ip', ['netns', 'exec', netns, BIN, ...args]] : [BIN, args];
  const proc = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const line = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 10000);
    proc.stdout.on('data', (d) => {
      buf += d;
      const m = buf.match(/listening on (https?):\/\/([\d.]+):(\d+)/);
      if (m) { clearTimeout(timer); resolve(m); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited ${code}: ${stderr}`)); });
  });
  const [scheme, addr, p] = [line[1], line[2], Number(line[3])];
  return {
    proc, port: p, url: `${scheme}://${addr}:${p}`, ws: `${scheme === 'https' ? 'wss' : 'ws'}://${addr}:${p}/ws`,
    stderr: () => stderr,
    async stop() {
      if (proc.exitCode !== null) return;
      proc.kill('SIGKILL');
      await once(proc, 'exit');
    },
  };
}

export async function launch(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
      '--autoplay-policy=no-user-gesture-required', '--disable-gpu', ...extraArgs,
    ],
  });
}

/// Debian's Firefox ESR, driven by puppeteer-core over WebDriver BiDi
/// (never a downloaded browser): a fake camera and microphone, autoplay
/// allowed, loopback ICE candidates (Firefox leaves them out otherwise). It
/// needs an audio server: scripts/test starts PulseAudio and sets
/// PULSE_SERVER (scripts/pulse.sh).
export async function launchFirefox() {
  if (!process.env.PULSE_SERVER) {
    throw new Error('Firefox needs an audio server and PULSE_SERVER is not set: run the tests with scripts/test, or `eval "$(scripts/pulse.sh)"` first');
  }
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr',
    headless: true,
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
      'media.autoplay.default': 0,
      'media.autoplay.blocking_policy': 0,
      'media.peerconnection.ice.loopback': true,
      'media.peerconnection.ice.obfuscate_host_addresses': false,
    },
  });
  // A Firefox that dies mid-test leaves puppeteer's calls pending with no
  // handle open, and node:test only says "Promise resolution is still
  // pending but the event loop has already resolved" (CI, once, in the
  // mixed-codec page test): say what happened.
  let closing = false;
  browser.on('disconnected', () => { if (!closing) console.error('firefox: the browser went away before the test closed it (crashed?)'); });
  return { kind: 'firefox', browser, close: () => { closing = true; return browser.close(); } };
}

/// A browser by name: `chromium` or `firefox`.
export async function launchBrowser(kind) {
  if (kind === 'firefox') return launchFirefox();
  return launch();
}

/// The browsers every cross-browser test runs in.
export const BROWSERS = ['chromium', 'firefox'];

/// A puppeteer page behind the part of playwright's page API these tests
/// use, so one test body drives Chromium (playwright-core) and Firefox.
class FirefoxPage {
  constructor(page) {
    this.page = page;
    this.errors = [];
    page.on('console', (m) => { if (m.type() === 'error') this.errors.push(m.text()); });
    page.on('pageerror', (e) => this.errors.push(`pageerror: ${e.message}`));
  }
  goto(url) { return this.page.goto(url); }
  waitForSelector(sel, opts) { return this.page.waitForSelector(sel, opts); }
  click(sel) { return this.page.click(sel); }
  async fill(sel, value) {
    await this.page.$eval(sel, (el, v) => { el.value = v; el.dispatchEvent(new Event('input', { bubbles: true })); }, value);
  }
  evaluate(fn, arg) { return this.page.evaluate(fn, arg); }
  waitForFunction(fn, arg, { timeout = 30000, polling = 100 } = {}) { return this.page.waitForFunction(fn, { timeout, polling }, arg); }
  screenshot(opts) { return this.page.screenshot(opts); }
  textContent(sel) { return this.page.$eval(sel, (el) => el.textContent); }
  getAttribute(sel, name) { return this.page.$eval(sel, (el, n) => el.getAttribute(n), name); }
  setViewportSize(v) { return this.page.setViewport(v); }
  inputValue(sel) { return this.page.$eval(sel, (el) => el.value); }
  addInitScript(fn) { return this.page.evaluateOnNewDocument(fn); }
  waitForTimeout(ms) { return sleep(ms); }
  async isVisible(sel) {
    const el = await this.page.$(sel);
    if (!el) return false;
    return el.evaluate((e) => !e.hidden && e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden');
  }
}

/// A page that records console errors and page errors in `page.errors`.
/// Chromium pages have camera and microphone permission given beforehand
/// unless `granted` is false (the browser then asks when a page wants
/// them; with the fake-UI flag the answer is yes).
export async function newPage(browser, viewport = { width: 1280, height: 800 }, { granted = true } = {}) {
  if (browser.kind === 'firefox') {
    const page = await browser.browser.newPage();
    await page.setViewport(viewport);
    return new FirefoxPage(page);
  }
  const context = await browser.newContext({ viewport, permissions: granted ? ['camera', 'microphone'] : [] });
  const page = await context.newPage();
  page.errors = [];
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(m.text()); });
  page.on('pageerror', (e) => page.errors.push(`pageerror: ${e.message}`));
  return page;
}

export async function openJoin(page, server, room, query = '') {
  await page.goto(`${server.url}/?room=${encodeURIComponent(room)}${query}`);
  await page.waitForSelector('#join-btn');
}

export async function join(page, server, room, name, query = '') {
  await openJoin(page, server, room, query);
  await page.fill('#name', name);
  await page.click('#join-btn');
  await waitConnected(page);
}

export async function waitConnected(page, timeout = 15000) {
  await page.waitForFunction(() => window.tessera && window.tessera.connected && window.tessera.layout, null, { timeout, polling: 100 });
}

/// Inbound video stats of the mixed stream.
export async function inboundVideo(page) {
  return page.evaluate(async () => {
    const pc = window.tessera.pc;
    if (!pc) return null;
    let v = null;
    (await pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') v = { frames: r.framesDecoded || 0, width: r.frameWidth, height: r.frameHeight, at: r.timestamp, received: r.framesReceived, dropped: r.framesDropped }; });
    return v;
  });
}

/// Audio packets the page sends per second, over `ms` (its microphone's
/// outbound RTP; the server's offer asks for 40 ms packets: 25 a second).
export async function audioPacketsPerSecond(page, ms = 2000) {
  const sent = () => page.evaluate(async () => {
    let n = null;
    (await window.tessera.pc.getStats()).forEach((r) => { if (r.type === 'outbound-rtp' && r.kind === 'audio') n = r.packetsSent; });
    return n;
  });
  const a = await sent();
  const t0 = Date.now();
  await sleep(ms);
  const b = await sent();
  return ((b - a) * 1000) / (Date.now() - t0);
}

/// Decoded frames per second of the mixed video over `ms`.
export async function decodedFps(page, ms = 3000) {
  const a = await inboundVideo(page);
  const t0 = Date.now();
  await sleep(ms);
  const b = await inboundVideo(page);
  // Over the time between the two stats snapshots (their own timestamps),
  // not between our calls returning, which a slow evaluate stretches.
  const span = a.at && b.at && b.at > a.at ? b.at - a.at : Date.now() - t0;
  const fps = ((b.frames - a.frames) * 1000) / span;
  if (fps < 25) {
    // Tells a server that sent fewer frames from a page that decoded fewer.
    const per = (k) => (b[k] != null && a[k] != null ? (((b[k] - a[k]) * 1000) / span).toFixed(1) : '?');
    console.error(`decodedFps: ${fps.toFixed(1)} decoded/s, ${per('received')} received/s, ${per('dropped')} dropped/s over ${span.toFixed(0)} ms, ${b.width}x${b.height}`);
  }
  return fps;
}

/// Mean colour of a 5x5 patch of the mixed video at canvas pixel (x, y)
/// (scaled to the frame the page receives: a lower rung is smaller).
export async function mixPixel(page, x, y) {
  return page.evaluate(([cx, cy, cw, ch]) => {
    const v = document.getElementById('mix');
    if (!v.videoWidth) return null;
    const c = document.createElement('canvas');
    c.width = v.videoWidth; c.height = v.videoHeight;
    const g = c.getContext('2d');
    g.drawImage(v, 0, 0);
    const [px, py] = [Math.round((cx * v.videoWidth) / cw), Math.round((cy * v.videoHeight) / ch)];
    const d = g.getImageData(Math.max(0, px - 2), Math.max(0, py - 2), 5, 5).data;
    const s = [0, 0, 0];
    for (let i = 0; i < d.length; i += 4) { s[0] += d[i]; s[1] += d[i + 1]; s[2] += d[i + 2]; }
    return s.map((x) => Math.round(x / (d.length / 4)));
  }, [x, y, CANVAS.width, CANVAS.height]);
}

export function close(c, want, tol) {
  return !!c && c.every((v, i) => Math.abs(v - want[i]) <= tol);
}

export async function until(fn, timeout, step = 100) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) return null;
    await sleep(step);
  }
}

/// Run `tessera bot` for `seconds`; resolves to its JSON report.
export async function runBot(server, room, name, { color = 'red', tone = 660, seconds = 8, extra = [] } = {}) {
  const report = `${OUT}/${name}.report.json`;
  const proc = spawn(BIN, ['bot', '--server', server.ws, '--room', room, '--name', name, '--color', color,
    '--tone', String(tone), '--duration', String(seconds), '--report', report, ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const [code] = await once(proc, 'exit');
  if (code !== 0) throw new Error(`bot exited ${code}: ${err}`);
  const { readFile } = await import('node:fs/promises');
  return JSON.parse(await readFile(report, 'utf8'));
}

/// Start `tessera bot` in the background; returns the process.
export function spawnBot(server, room, name, { color = 'blue', tone = 880, seconds = 60 } = {}) {
  return spawn(BIN, ['bot', '--server', server.ws, '--room', room, '--name', name, '--color', color,
    '--tone', String(tone), '--duration', String(seconds)], { stdio: 'ignore' });
}

/// `tessera bot` printing its report every 0.5 s while the test goes on:
/// `reports` fills as they come; `stop()` ends the bot.
export function startBotReporting(server, room, name, { color, tone, seconds = 120, extra = [] }) {
  const proc = spawn(BIN, ['bot', '--server', server.ws, '--room', room, '--name', name, '--color', color,
    '--tone', String(tone), '--duration', String(seconds), '--report-every', '0.5', ...extra], { stdio: ['ignore', 'pipe', 'ignore'] });
  const reports = [];
  let buf = '';
  proc.stdout.on('data', (d) => {
    buf += d;
    const lines = buf.split('\n');
    buf = lines.pop();
    for (const l of lines) if (l.startsWith('{') && l.endsWith('}')) reports.push(JSON.parse(l));
  });
  return {
    reports,
    last: () => reports[reports.length - 1],
    async stop() { if (proc.exitCode === null) { proc.kill('SIGKILL'); await once(proc, 'exit'); } },
  };
}

/// `tessera bot` printing its report every 0.5 s; resolves to every report.
export function botReports(server, room, name, { color, tone, seconds, extra = [] }) {
  const proc = spawn(BIN, ['bot', '--server', server.ws, '--room', room, '--name', name, '--color', color,
    '--tone', String(tone), '--duration', String(seconds), '--report-every', '0.5', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { err += d; });
  return new Promise((resolve, reject) => {
    proc.on('exit', (code) => {
      if (code !== 0) { reject(new Error(`bot exited ${code}: ${err}`)); return; }
      // One JSON object per line while running, then the final pretty report.
      const lines = out.split('\n').filter((l) => l.startsWith('{') && l.endsWith('}'));
      resolve(lines.map((l) => JSON.parse(l)));
    });
  });
}

/// Replace the page's camera and microphone with a solid colour (a canvas
/// redrawn at 30 fps; several colours alternate every half second) and a
/// sine tone of `hz` (Web Audio).
export async function sendColourAndTone(page, css, hz) {
  const colours = Array.isArray(css) ? css : [css];
  await page.evaluate(async ([list, freq]) => {
    const pc = window.tessera.pc;
    const c = document.createElement('canvas');
    c.width = 320; c.height = 240;
    const g = c.getContext('2d');
    let n = 0;
    const draw = () => { g.fillStyle = list[Math.floor(n++ / 15) % list.length]; g.fillRect(0, 0, 320, 240); };
    draw();
    const timer = setInterval(draw, 33);
    const vtrack = c.captureStream(30).getVideoTracks()[0];
    const ctx = new AudioContext();
    await ctx.resume();
    const osc = ctx.createOscillator();
    osc.frequency.value = freq;
    const gain = ctx.createGain();
    gain.gain.value = 0.3;
    const dst = ctx.createMediaStreamDestination();
    osc.connect(gain).connect(dst);
    osc.start();
    const atrack = dst.stream.getAudioTracks()[0];
    for (const sender of pc.getSenders()) {
      if (sender.track && sender.track.kind === 'video') await sender.replaceTrack(vtrack);
      else if (sender.track && sender.track.kind === 'audio') await sender.replaceTrack(atrack);
    }
    window.testSources = { timer, ctx, osc, vtrack, atrack, canvas: c };
  }, [colours, hz]);
}

/// The loudest level (dB, Web Audio analyser) within ±20 Hz of each of
/// `freqs` in the audio the page receives, over `ms`.
export async function toneLevels(page, freqs, ms = 4000) {
  return page.evaluate(async ([fs, dur]) => {
    const stream = document.getElementById('mix').srcObject;
    const ctx = new AudioContext();
    await ctx.resume();
    const an = ctx.createAnalyser();
    an.fftSize = 8192;
    ctx.createMediaStreamSource(stream).connect(an);
    const bins = new Float32Array(an.frequencyBinCount);
    const hz = ctx.sampleRate / an.fftSize;
    const band = (f) => Math.max(...bins.slice(Math.floor((f - 20) / hz), Math.ceil((f + 20) / hz)));
    const best = fs.map(() => -Infinity);
    const end = performance.now() + dur;
    while (performance.now() < end) {
      await new Promise((r) => setTimeout(r, 200));
      an.getFloatFrequencyData(bins);
      fs.forEach((f, i) => { best[i] = Math.max(best[i], band(f)); });
    }
    await ctx.close();
    return Object.fromEntries(fs.map((f, i) => [f, best[i]]));
  }, [freqs, ms]);
}

/// The video codecs (lower-case mime subtype) the page receives and sends.
export async function videoCodecs(page) {
  return page.evaluate(async () => {
    const stats = await window.tessera.pc.getStats();
    const codecOf = (r) => { const c = r && r.codecId && stats.get(r.codecId); return c ? c.mimeType.split('/')[1].toLowerCase() : null; };
    let inbound = null;
    let outbound = null;
    stats.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') inbound = codecOf(r);
      if (r.type === 'outbound-rtp' && r.kind === 'video') outbound = codecOf(r);
    });
    return { inbound, outbound };
  });
}
