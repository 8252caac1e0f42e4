// Leave and rejoin by hand works; and when the server is killed and
// restarted on the same port, the page rejoins by itself within 10 s,
// showing "Reconnecting" meanwhile. In Chromium and in Firefox.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, join, waitConnected, BROWSERS } from './helpers.mjs';

for (const kind of BROWSERS) test(`leave, rejoin, and automatic rejoin after a server restart (${kind})`, { timeout: 90000 }, async () => {
  let server = await startServer();
  const browser = await launchBrowser(kind);
  try {
    const page = await newPage(browser);
    await join(page, server, 'phoenix', 'Ada');
    await page.click('#leave-btn');
    await page.waitForSelector('#join-screen:not([hidden])');
    assert.equal(await page.textContent('#status'), 'Not connected');
    await page.click('#join-btn');
    await waitConnected(page);
    const firstId = await page.evaluate(() => window.tessera.id);

    const port = server.port;
    await server.stop();
    await page.waitForFunction(() => /Reconnecting/.test(document.getElementById('status').textContent), null, { timeout: 5000 });
    const t0 = Date.now();
    server = await startServer(port);
    await page.waitForFunction((old) => window.tessera.connected && window.tessera.id && window.tessera.id !== old
      && window.tessera.layout && window.tessera.layout.tiles.some((t) => t.id === window.tessera.id), firstId, { timeout: 10000, polling: 100 });
    const took = Date.now() - t0;
    assert.ok(took < 10000, `rejoined after ${took} ms`);
    assert.match(await page.textContent('#status'), /Connected/);
    // The only console errors allowed are the refused WebSocket attempts while the server was down.
    const other = page.errors.filter((e) => !/WebSocket connection to .* failed|can.t establish a connection to the server at ws:/.test(e));
    assert.deepEqual(other, []);
  } finally {
    await browser.close();
    await server.stop();
  }
});
