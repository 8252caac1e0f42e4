// "Watch only" joins as a receive-only viewer without ever asking for the
// camera or microphone (getUserMedia is never called: no permission
// prompt): from the join screen's button, and from a ?watch=1 link. The
// viewer sees the sender's colour in its tile and hears its tone, is in
// nobody's grid, and has no microphone or camera buttons. In Chromium and
// Firefox.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, newPage, join, openJoin, waitConnected, BROWSERS, mixPixel, close, until, sendColourAndTone, toneLevels,
} from './helpers.mjs';

/** A page that counts getUserMedia calls (window.gumCalls), with no
 * camera or microphone permission given beforehand: any call would be a
 * permission prompt for a real person. */
async function countingPage(browser) {
  const page = await newPage(browser, undefined, { granted: false });
  await page.addInitScript(() => {
    window.gumCalls = 0;
    if (!navigator.mediaDevices) return;
    const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = (c) => { window.gumCalls += 1; return real(c); };
  });
  return page;
}

for (const kind of BROWSERS) test(`watch only joins without asking for camera or microphone (${kind})`, { timeout: 90000 }, async () => {
  const server = await startServer();
  const browser = await launchBrowser(kind);
  try {
    const sender = await newPage(browser);
    await join(sender, server, 'stage', 'Speaker', '&quality=high');
    await sendColourAndTone(sender, '#00c000', 520);
    const senderId = await sender.evaluate(() => window.tessera.id);

    // 1. The join screen's "Watch only" button.
    const viewer = await countingPage(browser);
    await openJoin(viewer, server, 'stage', '&quality=high');
    await viewer.fill('#name', 'Watcher');
    await viewer.click('#watch-btn');
    await waitConnected(viewer);
    // 2. A watch-only link: the join button itself watches.
    const linked = await countingPage(browser);
    await openJoin(linked, server, 'stage', '&watch=1&quality=high');
    assert.equal(await linked.isVisible('#preview'), false, 'a watch-only link shows no camera preview');
    await linked.fill('#name', 'Linked');
    await linked.click('#join-btn');
    await waitConnected(linked);

    for (const [what, page] of [['button', viewer], ['link', linked]]) {
      assert.equal(await page.evaluate(() => window.gumCalls), 0, `${what}: getUserMedia was called`);
      assert.equal(await page.evaluate(() => window.tessera.viewer), true, `${what}: not a viewer`);
      assert.equal(await page.isVisible('#mic-btn'), false, `${what}: a viewer has no microphone button`);
      assert.equal(await page.isVisible('#cam-btn'), false, `${what}: a viewer has no camera button`);
      // Sends nothing.
      const sent = await page.evaluate(async () => { let b = 0; (await window.tessera.pc.getStats()).forEach((r) => { if (r.type === 'outbound-rtp') b += r.bytesSent; }); return b; });
      assert.equal(sent, 0, `${what}: a viewer sent ${sent} RTP bytes`);
      // Sees the sender, alone in the grid, in its tile.
      const tiles = await page.evaluate(() => window.tessera.layout.tiles);
      assert.deepEqual(tiles.map((t) => t.id), [senderId], `${what}: tiles ${JSON.stringify(tiles)}`);
      const t = tiles[0];
      const seen = await until(async () => close(await mixPixel(page, t.x + t.width / 2, t.y + t.height / 3), [0, 192, 0], 60), 10000);
      assert.ok(seen, `${what}: the sender's tile shows ${JSON.stringify(await mixPixel(page, t.x + t.width / 2, t.y + t.height / 3))}`);
      const levels = await toneLevels(page, [520], 3000);
      assert.ok(levels[520] > -60, `${what}: the sender's 520 Hz too quiet: ${JSON.stringify(levels)}`);
    }
    // The sender's grid has the sender only: viewers take no tile.
    assert.equal(await sender.evaluate(() => window.tessera.layout.tiles.length), 1);
    for (const p of [sender, viewer, linked]) assert.deepEqual(p.errors, []);
  } finally {
    await browser.close();
    await server.stop();
  }
});
