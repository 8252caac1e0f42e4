// Switching the camera during the call changes what the others see in
// that tile within 2 s, on the same peer connection (replaceTrack: no
// renegotiation, no rejoin); a camera that goes away mid-call falls back
// to another one, and with none left the page says so and the others see
// the name card. The page's cameras are two canvases (red and blue)
// standing in for devices. In Chromium and Firefox.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, join, until, close, startBotReporting, BROWSERS, CARD_RGB } from './helpers.mjs';

/** Two fake cameras and a fake microphone for the page. */
function fakeDevices() {
  const cams = { 'red-cam': '#ff0000', 'blue-cam': '#0000ff' };
  window.fakeDevices = { gone: new Set(), tracks: {} };
  const list = () => [
    ...Object.keys(cams).filter((id) => !window.fakeDevices.gone.has(id)).map((id) => ({ kind: 'videoinput', deviceId: id, groupId: id, label: id })),
    { kind: 'audioinput', deviceId: 'tone-mic', groupId: 'mic', label: 'tone-mic' },
  ];
  navigator.mediaDevices.enumerateDevices = async () => list().map((d) => ({ ...d, toJSON() { return d; } }));
  navigator.mediaDevices.getUserMedia = async (c) => {
    const stream = new MediaStream();
    if (c && c.video) {
      const want = c.video.deviceId && c.video.deviceId.exact;
      const id = want || Object.keys(cams).find((k) => !window.fakeDevices.gone.has(k));
      if (!id || !cams[id] || window.fakeDevices.gone.has(id)) throw new DOMException('no such camera', 'NotFoundError');
      const canvas = document.createElement('canvas');
      canvas.width = 640; canvas.height = 360;
      const g = canvas.getContext('2d');
      setInterval(() => { g.fillStyle = cams[id]; g.fillRect(0, 0, 640, 360); }, 33);
      const track = canvas.captureStream(30).getVideoTracks()[0];
      const settings = track.getSettings.bind(track);
      track.getSettings = () => ({ ...settings(), width: 640, height: 360, deviceId: id });
      window.fakeDevices.tracks[id] = track;
      stream.addTrack(track);
    }
    if (c && c.audio) {
      const ctx = new AudioContext();
      const osc = ctx.createOscillator();
      osc.frequency.value = 500;
      const dst = ctx.createMediaStreamDestination();
      osc.connect(dst);
      osc.start();
      const track = dst.stream.getAudioTracks()[0];
      const settings = track.getSettings.bind(track);
      track.getSettings = () => ({ ...settings(), deviceId: 'tone-mic' });
      stream.addTrack(track);
    }
    return stream;
  };
}

/** Unplug a fake camera: it leaves the device list and its track ends. */
async function unplug(page, id) {
  await page.evaluate((cam) => {
    window.fakeDevices.gone.add(cam);
    const t = window.fakeDevices.tracks[cam];
    t.stop();
    t.dispatchEvent(new Event('ended'));
  }, id);
}

for (const kind of BROWSERS) test(`the camera switches mid-call without a rejoin (${kind})`, { timeout: 90000 }, async () => {
  const server = await startServer();
  const browser = await launchBrowser(kind);
  let bot = null;
  try {
    const page = await newPage(browser);
    await page.addInitScript(fakeDevices);
    await join(page, server, 'dev', 'Switcher', '&quality=high');
    const id = await page.evaluate(() => { window.firstPc = window.tessera.pc; return window.tessera.id; });
    bot = startBotReporting(server, 'dev', 'Watcher', { color: 'green', tone: 700 });
    const tileColour = () => { const r = bot.last(); const t = r && r.tiles.find((x) => x.id === id); return t ? t.center_rgb : null; };
    const shows = (rgb, ms) => until(() => { const c = tileColour(); return c && close(c, rgb, 60); }, ms);
    assert.ok(await shows([255, 0, 0], 20000), `the red camera never showed: ${JSON.stringify(tileColour())}`);
    const options = await page.evaluate(() => [...document.getElementById('room-camera-select').options].map((o) => o.value));
    assert.ok(options.includes('red-cam') && options.includes('blue-cam'), `camera picker in the call: ${options}`);
    assert.equal(await page.evaluate(() => document.getElementById('room-camera-select').value), 'red-cam');

    // 1. Choose the blue camera in the call.
    const t0 = Date.now();
    await page.evaluate(() => { const s = document.getElementById('room-camera-select'); s.value = 'blue-cam'; s.dispatchEvent(new Event('change')); });
    const blue = await shows([0, 0, 255], 5000);
    const took = Date.now() - t0;
    assert.ok(blue, `the blue camera never showed: ${JSON.stringify(tileColour())}; the page: ${JSON.stringify(await page.evaluate(() => ({ id: window.tessera.id, connected: window.tessera.connected, note: document.getElementById('device-note').textContent, error: document.getElementById('error').textContent })))}; the bot: ${JSON.stringify(bot.last() && bot.last().tiles)}; server: ${server.stderr().split('\n').filter((l) => /left|joined|error|timeout|failed/i.test(l)).slice(-12).join('\n')}`);
    assert.ok(took <= 2000, `the switch took ${took} ms to reach the others`);
    const same = await page.evaluate(() => ({ pc: window.tessera.pc === window.firstPc, id: window.tessera.id, connected: window.tessera.connected }));
    assert.deepEqual(same, { pc: true, id, connected: true }, 'no new connection, same participant');

    // 2. The blue camera is unplugged: back to the red one, and said so.
    await unplug(page, 'blue-cam');
    assert.ok(await shows([255, 0, 0], 5000), `no fallback to the red camera: ${JSON.stringify(tileColour())}`);
    assert.match(await page.textContent('#device-note'), /stopped; now using red-cam/);

    // 3. The last camera goes: the page says so, the others see the name card.
    await unplug(page, 'red-cam');
    assert.ok(await shows(CARD_RGB, 5000), `no name card after the last camera went: ${JSON.stringify(tileColour())}`);
    assert.match(await page.textContent('#error'), /camera was disconnected/);
    assert.equal(await page.evaluate(() => window.tessera.id), id, 'still the same participant');
    assert.deepEqual(page.errors, []);
  } finally {
    if (bot) await bot.stop();
    await browser.close();
    await server.stop();
  }
});
