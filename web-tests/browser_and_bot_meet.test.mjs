// A browser and a `tessera bot` in one room: the bot finds the browser's
// tile non-empty in its decoded grid, and the browser hears the bot's tone
// (WebAudio analyser on the remote audio track) — and not its own audio.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launch, newPage, join, runBot, CARD_RGB, close } from './helpers.mjs';

test('a browser and a bot see and hear each other', { timeout: 90000 }, async () => {
  const server = await startServer();
  const browser = await launch();
  try {
    const page = await newPage(browser);
    await join(page, server, 'mixed', 'Browser');
    const browserId = await page.evaluate(() => window.tessera.id);
    // Start listening for the bot's tone while it is in the room.
    const heard = page.evaluate(async () => {
      const v = document.getElementById('mix');
      const stream = v.srcObject;
      const ctx = new AudioContext();
      await ctx.resume();
      const an = ctx.createAnalyser();
      an.fftSize = 8192;
      ctx.createMediaStreamSource(stream).connect(an);
      const bins = new Float32Array(an.frequencyBinCount);
      const hz = ctx.sampleRate / an.fftSize;
      let best = { hz: 0, db: -Infinity, at660: -Infinity };
      const until = performance.now() + 10000;
      while (performance.now() < until) {
        await new Promise((r) => setTimeout(r, 200));
        an.getFloatFrequencyData(bins);
        let peak = 0;
        for (let i = 1; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
        const at660 = Math.max(...bins.slice(Math.floor(640 / hz), Math.ceil(680 / hz)));
        if (bins[peak] > best.db) best = { hz: peak * hz, db: bins[peak], at660 };
      }
      return best;
    });
    const report = await runBot(server, 'mixed', 'bot-660', { color: 'blue', tone: 660, seconds: 11 });
    const tile = report.tiles.find((t) => t.id === browserId);
    assert.ok(tile, `bot's layout has the browser's tile: ${JSON.stringify(report.tiles)}`);
    const c = tile.center_rgb;
    assert.ok(Math.max(...c) > 40, `browser tile is black: ${c}`);
    assert.ok(!close(c, CARD_RGB, 12), `browser tile shows the placeholder: ${c}`);
    assert.ok(report.fps >= 20, `bot received ${report.fps} fps`);
    const best = await heard;
    assert.ok(Math.abs(best.hz - 660) < 15, `dominant frequency in the browser: ${JSON.stringify(best)}`);
    assert.ok(best.at660 > -60, `660 Hz too quiet: ${best.at660} dB`);
    assert.deepEqual(page.errors, []);
  } finally {
    await browser.close();
    await server.stop();
  }
});
