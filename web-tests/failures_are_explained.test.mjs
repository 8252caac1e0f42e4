// The failure paths people hit: a denied camera still joins (audio only,
// the tile shows the name card, the page says so), and a full room is
// explained in words instead of failing silently. In Chromium and Firefox.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, join, openJoin, mixPixel, close, until, CARD_RGB, OUT, BROWSERS } from './helpers.mjs';

for (const kind of BROWSERS) test(`camera denied: joins with audio only and shows the name card (${kind})`, { timeout: 60000 }, async () => {
  const server = await startServer();
  const browser = await launchBrowser(kind);
  try {
    const page = await newPage(browser);
    await page.addInitScript(() => {
      const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
      navigator.mediaDevices.getUserMedia = (c) => (c && c.video
        ? Promise.reject(new DOMException('Permission denied', 'NotAllowedError')) : real(c));
    });
    await join(page, server, 'nocam', 'Audio Only');
    assert.match(await page.textContent('#preview-note'), /audio only/);
    const tile = await page.evaluate(() => window.tessera.layout.tiles[0]);
    const ok = await until(async () => close(await mixPixel(page, tile.x + 20, tile.y + 20), CARD_RGB, 24), 10000);
    const diag = ok ? '' : await page.evaluate(async () => {
      const out = [];
      (await window.tessera.pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp') out.push(`${r.kind}: packets ${r.packetsReceived} decoded ${r.framesDecoded} keyframes ${r.keyFramesDecoded} pli ${r.pliCount} fir ${r.firCount}`);
      });
      const v = document.getElementById('mix');
      out.push(`video ${v.videoWidth}x${v.videoHeight} ready ${v.readyState} paused ${v.paused} tracks ${v.srcObject && v.srcObject.getTracks().map((t) => `${t.kind}:${t.muted}`)}`);
      return out.join('; ');
    });
    assert.ok(ok, `tile shows ${await mixPixel(page, tile.x + 20, tile.y + 20)}; ${diag}`);
    await page.screenshot({ path: `${OUT}/room-audio-only-${kind}.png` });
    assert.deepEqual(page.errors, []);
  } finally {
    await browser.close();
    await server.stop();
  }
});

for (const kind of BROWSERS) test(`a full room is explained in words (${kind})`, { timeout: 60000 }, async () => {
  const server = await startServer(0, ['--max-participants', '1']);
  const browser = await launchBrowser(kind);
  try {
    const first = await newPage(browser);
    await join(first, server, 'tiny', 'First');
    const second = await newPage(browser);
    await openJoin(second, server, 'tiny');
    await second.fill('#name', 'Second');
    await second.click('#join-btn');
    await second.waitForSelector('#error:not([hidden])', { timeout: 5000 });
    assert.match(await second.textContent('#error'), /This room is full/);
    // Back on the join screen, not reconnecting in a loop.
    await second.waitForTimeout(1500);
    assert.equal(await second.isVisible('#join-screen'), true);
    assert.doesNotMatch(await second.textContent('#status'), /Reconnecting/);
  } finally {
    await browser.close();
    await server.stop();
  }
});
