// Send at tile size: the server tells each sender its tile size and a
// bitrate for it (`send_size`); the page applies them with setParameters.
// A browser in a 9-person grid must upload far less than in a 2-person one.
// Prints both uplinks (kbps) for the record. In Chromium and in Firefox.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer, launchBrowser, newPage, join, spawnBot, until, BROWSERS } from './helpers.mjs';

async function uplink(page, ms = 5000) {
  const read = () => page.evaluate(async () => {
    let bytes = 0; let w = 0; let h = 0;
    (await window.tessera.pc.getStats()).forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') { bytes += r.bytesSent; w = r.frameWidth || w; h = r.frameHeight || h; }
    });
    return { bytes, w, h, t: performance.now() };
  });
  const a = await read();
  await sleep(ms);
  const b = await read();
  return { kbps: ((b.bytes - a.bytes) * 8) / (b.t - a.t), width: b.w, height: b.h };
}

for (const kind of BROWSERS) test(`a browser sends at its tile size (${kind})`, { timeout: 120000 }, async () => {
  const server = await startServer();
  const browser = await launchBrowser(kind);
  const bots = [];
  try {
    const page = await newPage(browser);
    await join(page, server, 'tiles', 'Browser');
    await sleep(4000);
    const one = await uplink(page, 3000);
    bots.push(spawnBot(server, 'tiles', 'bot1'));
    await page.waitForFunction(() => window.tessera.layout.tiles.length === 2, null, { timeout: 10000 });
    const halved = await until(() => page.evaluate(() => window.tessera.sendSize && window.tessera.sendSize.width === 320), 5000);
    assert.ok(halved, `2-person send_size: ${JSON.stringify(await page.evaluate(() => window.tessera.sendSize))}`);
    await sleep(4000); // let the encoder settle at the new size and rate
    const two = await uplink(page);
    for (let i = 2; i <= 8; i++) bots.push(spawnBot(server, 'tiles', `bot${i}`, { tone: 300 + 50 * i }));
    await page.waitForFunction(() => window.tessera.layout.tiles.length === 9, null, { timeout: 20000 });
    const size = await page.evaluate(() => window.tessera.sendSize);
    assert.ok(size.width <= 214 && size.height <= 120, `9-person tile: ${JSON.stringify(size)}`);
    await sleep(4000);
    const nine = await uplink(page);
    console.log(`${kind} uplink video: alone (full canvas tile) ${one.kbps.toFixed(0)} kbps at ${one.width}x${one.height}; 2-person ${two.kbps.toFixed(0)} kbps at ${two.width}x${two.height}; `
      + `9-person ${nine.kbps.toFixed(0)} kbps at ${nine.width}x${nine.height} (max_bitrate ${size.max_bitrate})`);
    assert.ok(nine.width <= size.width + 2 && nine.height <= size.height + 2, `sends ${nine.width}x${nine.height} into a ${size.width}x${size.height} tile`);
    assert.ok(two.width > nine.width, 'a bigger tile gets a bigger picture');
    // Chrome's fake camera is easy to compress, so bitrate falls less than
    // pixels do; the pixel rate is what the server decodes and scales.
    assert.ok(nine.width * nine.height <= 0.5 * two.width * two.height, 'pixels per frame at least halve');
    assert.ok(nine.kbps < 0.8 * two.kbps, `9-person uplink ${nine.kbps.toFixed(0)} kbps vs 2-person ${two.kbps.toFixed(0)} kbps`);
    assert.ok(nine.kbps <= (size.max_bitrate / 1000) * 1.3, `uplink ${nine.kbps.toFixed(0)} kbps over max_bitrate ${size.max_bitrate}`);
    assert.deepEqual(page.errors, []);
  } finally {
    for (const b of bots) b.kill('SIGKILL');
    await browser.close();
    await server.stop();
  }
});
