// What a real deployment needs, with the real parts: a page that may only
// use TURN relays (?relay=1) and a relay-only `tessera bot` meet through
// Debian's coturn; a wrong TURN secret is explained on the page; and a page
// opened from another address gets its camera over HTTPS
// (--tls-self-signed) while the same page over plain HTTP says why not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer, launch, newPage, join, openJoin, mixPixel, close, until, runBot } from './helpers.mjs';

async function freeUdpPort() {
  const s = createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address();
  s.close();
  return port;
}

/// coturn on loopback with TURN REST credentials; fails loudly if missing.
async function startCoturn(secret) {
  const port = await freeUdpPort();
  const relay = 20000 + (port % 20000);
  const proc = spawn('turnserver', ['-n', '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', '--realm=tessera.test',
    '--use-auth-secret', `--static-auth-secret=${secret}`, `--listening-port=${port}`, `--min-port=${relay}`,
    `--max-port=${relay + 200}`, '--fingerprint', '--no-tls', '--no-dtls', '--no-cli', '--allow-loopback-peers',
    '--no-multicast-peers', '--no-tcp-relay', '--log-file=stdout', '--simple-log'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.on('error', (e) => { out += `cannot start turnserver (scripts/deps.sh --browser installs coturn): ${e}`; });
  const listening = () => { try { return execFileSync('ss', ['-ulnH'], { encoding: 'utf8' }).includes(`127.0.0.1:${port} `); } catch { return false; } };
  const up = await until(() => listening() || proc.exitCode !== null, 10000);
  assert.ok(up && proc.exitCode === null, `coturn did not start: ${out}`);
  return { url: `turn:127.0.0.1:${port}?transport=udp`, async stop() { proc.kill('SIGKILL'); await once(proc, 'exit'); } };
}

/// Replace the page's camera and microphone with a solid colour and a tone.
async function sendColourAndTone(page, colour, hz) {
  await page.evaluate(async ([colour, hz]) => {
    const c = document.createElement('canvas');
    c.width = 320; c.height = 240;
    const g = c.getContext('2d');
    const draw = () => { g.fillStyle = colour; g.fillRect(0, 0, 320, 240); };
    draw();
    window.keepDrawing = setInterval(draw, 33);
    const ctx = new AudioContext();
    await ctx.resume();
    const osc = ctx.createOscillator();
    osc.frequency.value = hz;
    const dst = ctx.createMediaStreamDestination();
    osc.connect(dst);
    osc.start();
    window.keepAudio = { ctx, osc };
    for (const sender of window.tessera.pc.getSenders()) {
      if (sender.track && sender.track.kind === 'video') await sender.replaceTrack(c.captureStream(30).getVideoTracks()[0]);
      else if (sender.track && sender.track.kind === 'audio') await sender.replaceTrack(dst.stream.getAudioTracks()[0]);
    }
  }, [colour, hz]);
}

/// The page's selected candidate pair: local and remote candidate types.
async function selectedPair(page) {
  return page.evaluate(async () => {
    const stats = await window.tessera.pc.getStats();
    let pair = null;
    stats.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId); });
    if (!pair) return null;
    return { local: stats.get(pair.localCandidateId).candidateType, remote: stats.get(pair.remoteCandidateId).candidateType };
  });
}

/// Strongest level (dB) near `hz` in the page's received audio over 3 s.
async function levelAt(page, hz) {
  return page.evaluate(async (hz) => {
    const ctx = new AudioContext();
    await ctx.resume();
    const an = ctx.createAnalyser();
    an.fftSize = 8192;
    ctx.createMediaStreamSource(document.getElementById('mix').srcObject).connect(an);
    const bins = new Float32Array(an.frequencyBinCount);
    const w = ctx.sampleRate / an.fftSize;
    let best = -Infinity;
    const end = performance.now() + 3000;
    while (performance.now() < end) {
      await new Promise((r) => setTimeout(r, 200));
      an.getFloatFrequencyData(bins);
      best = Math.max(best, ...bins.slice(Math.floor((hz - 20) / w), Math.ceil((hz + 20) / w)));
    }
    return best;
  }, hz);
}

test('a relay-only page and a relay-only bot meet through coturn', { timeout: 120000 }, async () => {
  const turn = await startCoturn('north-wind');
  const server = await startServer(0, ['--turn', turn.url, '--turn-secret', 'north-wind']);
  const browser = await launch();
  try {
    const page = await newPage(browser);
    await join(page, server, 'relay', 'Page', '&relay=1');
    const pageId = await page.evaluate(() => window.tessera.id);
    await sendColourAndTone(page, '#ff0000', 440);
    const bot = runBot(server, 'relay', 'relay-bot', { color: 'blue', tone: 660, seconds: 12, extra: ['--relay-only'] });
    await sleep(6000);
    const pair = await selectedPair(page);
    assert.deepEqual(pair && pair.local, 'relay', `the page's selected pair: ${JSON.stringify(pair)}`);
    const layout = await page.evaluate(() => window.tessera.layout);
    const botTile = layout.tiles.find((t) => t.id !== pageId);
    assert.ok(botTile, `no tile for the bot: ${JSON.stringify(layout)}`);
    const blue = await until(async () => close(await mixPixel(page, botTile.x + botTile.width / 2, botTile.y + botTile.height / 2), [0, 0, 255], 60), 5000);
    assert.ok(blue, `the page does not see the bot's blue: ${await mixPixel(page, botTile.x + botTile.width / 2, botTile.y + botTile.height / 2)}`);
    const [at660, at440] = [await levelAt(page, 660), await levelAt(page, 440)];
    assert.ok(at660 > -60 && at440 < at660 - 20, `the page hears the bot at ${at660} dB and itself at ${at440} dB`);
    const fps = await page.evaluate(async () => {
      const frames = async () => { let f = 0; (await window.tessera.pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') f = r.framesDecoded; }); return f; };
      const a = await frames(); const t = performance.now();
      await new Promise((r) => setTimeout(r, 2000));
      return ((await frames()) - a) * 1000 / (performance.now() - t);
    });
    assert.ok(fps >= 25, `the page decodes ${fps.toFixed(1)} fps through the relay`);
    const report = await bot;
    assert.equal(report.selected_pair && report.selected_pair.local, 'relay', `the bot's selected pair: ${JSON.stringify(report.selected_pair)}`);
    assert.ok(report.fps >= 25, `the bot received ${report.fps} fps`);
    const seen = (report.tiles.find((t) => t.id === pageId) || {}).center_rgb;
    assert.ok(close(seen, [255, 0, 0], 60), `the bot sees ${JSON.stringify(seen)} in the page's tile`);
    assert.ok(report.dominant_frequencies.some((f) => Math.abs(f.hz - 440) < 15), `the bot hears ${JSON.stringify(report.dominant_frequencies)}`);
    assert.deepEqual(page.errors, []);
  } finally {
    await browser.close();
    await server.stop();
    await turn.stop();
  }
});

test('a wrong TURN secret is explained on a relay-only page', { timeout: 60000 }, async () => {
  const turn = await startCoturn('north-wind');
  const server = await startServer(0, ['--turn', turn.url, '--turn-secret', 'south-wind']);
  const browser = await launch();
  try {
    const page = await newPage(browser);
    await openJoin(page, server, 'relay', '&relay=1');
    await page.fill('#name', 'Page');
    await page.click('#join-btn');
    await page.waitForSelector('#error:not([hidden])', { timeout: 30000 });
    const text = await page.textContent('#error');
    assert.match(text, /TURN/);
    assert.match(text, /turn_secret/);
    assert.equal(await page.evaluate(() => window.tessera.connected), false);
  } finally {
    await browser.close();
    await server.stop();
    await turn.stop();
  }
});

/// A namespace with a veth to this one: the server listens at `inner`, the
/// browser reaches it from `outer`, an address that is not loopback.
function netns() {
  const name = `tshttps${process.pid % 10000}`;
  const [outer, inner] = ['10.231.7.1', '10.231.7.2'];
  const ip = (...a) => execFileSync('ip', a, { stdio: 'pipe' });
  try { ip('netns', 'del', name); } catch { /* not there */ }
  try { ip('link', 'del', `${name}h`); } catch { /* not there */ }
  try {
    ip('netns', 'add', name);
    ip('link', 'add', `${name}h`, 'type', 'veth', 'peer', 'name', `${name}n`);
    ip('link', 'set', `${name}n`, 'netns', name);
    ip('addr', 'add', `${outer}/24`, 'dev', `${name}h`);
    ip('link', 'set', `${name}h`, 'up');
    ip('netns', 'exec', name, 'ip', 'addr', 'add', `${inner}/24`, 'dev', `${name}n`);
    ip('netns', 'exec', name, 'ip', 'link', 'set', `${name}n`, 'up');
    ip('netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up');
  } catch (e) {
    throw new Error(`this test needs network namespaces and veth (root, iproute2): ${e.stderr || e}`);
  }
  return { name, inner, del() { try { ip('netns', 'del', name); } catch { /* gone */ } } };
}

test('over HTTPS from another address the page gets its camera; over HTTP it says why not', { timeout: 90000 }, async () => {
  const ns = netns();
  const secure = await startServer(0, ['--tls-self-signed'], { host: ns.inner, netns: ns.name });
  const plain = await startServer(0, [], { host: ns.inner, netns: ns.name });
  const browser = await launch(['--ignore-certificate-errors']);
  try {
    assert.match(secure.url, /^https:\/\/10\.231\.7\.2:/);
    const page = await newPage(browser);
    await join(page, secure, 'lan', 'Remote');
    assert.equal(await page.evaluate(() => window.isSecureContext), true);
    assert.equal(await page.textContent('#preview-note'), '', 'camera and microphone were given');
    const fps = await until(async () => {
      const v = await page.evaluate(async () => { let f = 0; (await window.tessera.pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') f = r.framesDecoded; }); return f; });
      return v > 30 ? v : null;
    }, 10000);
    assert.ok(fps, 'no mixed video over HTTPS');
    const sent = await page.evaluate(async () => { let b = 0; (await window.tessera.pc.getStats()).forEach((r) => { if (r.type === 'outbound-rtp' && r.kind === 'video') b = r.bytesSent; }); return b; });
    assert.ok(sent > 10000, `the camera sent ${sent} bytes`);

    const insecure = await newPage(browser);
    await openJoin(insecure, plain, 'lan');
    assert.equal(await insecure.evaluate(() => window.isSecureContext), false);
    const note = await until(async () => { const t = await insecure.textContent('#preview-note'); return /secure connection/.test(t) ? t : null; }, 5000);
    assert.ok(note, `no explanation on the insecure page: ${await insecure.textContent('#preview-note')}`);
    assert.match(note, /HTTPS/);
    assert.deepEqual(page.errors, []);
  } finally {
    await browser.close();
    await secure.stop();
    await plain.stop();
    ns.del();
  }
});
