// Three browser pages in one room each decode the mixed grid at full rate
// and canvas size; turning a camera off shows that participant's name card
// in everyone's grid within 2 s and marks it in the participants list;
// muting marks the participant in everyone's list. In Chromium and Firefox.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, newPage, join, BROWSERS, decodedFps, inboundVideo, mixPixel, close, until, CANVAS, CARD_RGB, OUT,
} from './helpers.mjs';

for (const kind of BROWSERS) test(`three pages share one room; camera off shows the name card (${kind})`, { timeout: 120000 }, async () => {
  const server = await startServer();
  const browser = await launchBrowser(kind);
  try {
    const pages = [];
    for (const name of ['Ada', 'Grace', 'Linus']) {
      const p = await newPage(browser);
      // The high rung: under a loaded machine the automatic ladder may
      // move a page to the low rung's 15 fps (the ladder's own tests).
      await join(p, server, 'trio', name, '&quality=high');
      pages.push(p);
    }
    for (const p of pages) {
      await until(() => p.evaluate(() => window.tessera.layout.tiles.length === 3), 5000);
      assert.equal(await p.evaluate(() => window.tessera.layout.tiles.length), 3);
    }
    await new Promise((r) => setTimeout(r, 1500));
    for (const p of pages) {
      const fps = await decodedFps(p, 3000);
      const v = await inboundVideo(p);
      assert.ok(fps >= 20, `mixed video decodes at ${fps.toFixed(1)} fps`);
      assert.deepEqual([v.width, v.height], [CANVAS.width, CANVAS.height]);
    }
    await pages[0].screenshot({ path: `${OUT}/room-desktop-${kind}.png` });

    // Camera off on page 1 (Ada).
    const adaId = await pages[0].evaluate(() => window.tessera.id);
    await pages[0].click('#cam-btn');
    assert.equal(await pages[0].getAttribute('#cam-btn', 'aria-pressed'), 'true');
    const t0 = Date.now();
    for (const p of pages.slice(1)) {
      const tile = await p.evaluate((id) => window.tessera.layout.tiles.find((t) => t.id === id), adaId);
      const ok = await until(async () => {
        const c = await mixPixel(p, tile.x + Math.round(tile.width / 8), tile.y + Math.round(tile.height / 8));
        return close(c, CARD_RGB, 24);
      }, Math.max(0, 2000 - (Date.now() - t0)), 50);
      const shownAfter = Date.now() - t0;
      assert.ok(ok, `name card not shown in Ada's tile within 2 s: ${await mixPixel(p, tile.x + tile.width / 8, tile.y + tile.height / 8)}`);
      assert.ok(shownAfter <= 2100, `name card shown after ${shownAfter} ms`);
      const entry = await p.textContent(`#people li[data-id="${adaId}"]`);
      assert.match(entry, /camera off/);
    }
    await pages[1].screenshot({ path: `${OUT}/room-camera-off-${kind}.png` });

    // Mute on page 2 (Grace): everyone's list marks her muted, then not.
    const graceId = await pages[1].evaluate(() => window.tessera.id);
    const marked = (p, want) => until(async () => /muted/.test(await p.textContent(`#people li[data-id="${graceId}"]`)) === want, 3000);
    await pages[1].click('#mic-btn');
    assert.equal((await pages[1].textContent('#mic-btn')).trim(), 'Unmute');
    for (const p of [pages[0], pages[2]]) assert.ok(await marked(p, true), 'Grace is marked muted');
    await pages[1].click('#mic-btn');
    for (const p of [pages[0], pages[2]]) assert.ok(await marked(p, false), 'Grace is no longer marked muted');
    for (const p of pages) assert.deepEqual(p.errors, [], 'no console errors');
  } finally {
    await browser.close();
    await server.stop();
  }
});
