// A browser and a `tessera bot` in one room: the bot finds the browser's
// live picture in its tile (the page sends a canvas alternating red and
// blue, and the bot sees both: not a frozen frame), and the browser hears
// the bot's tone (WebAudio analyser on the remote audio track) and not its
// own (the page sends a 440 Hz oscillator), and sends its microphone in
// the 40 ms packets the server's offer asks for (`--audio-ptime-ms 40`;
// the default is 20, what browsers send unasked). In Chromium and Firefox.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, join, close, botReports, sendColourAndTone, toneLevels, audioPacketsPerSecond, BROWSERS } from './helpers.mjs';

for (const kind of BROWSERS) test(`a browser and a bot see and hear each other (${kind})`, { timeout: 90000 }, async () => {
  const server = await startServer(0, ['--audio-ptime-ms', '40']);
  const browser = await launchBrowser(kind);
  try {
    const page = await newPage(browser);
    await join(page, server, 'mixed', 'Browser');
    const browserId = await page.evaluate(() => window.tessera.id);
    // Send a picture that changes (red and blue, half a second each) and a
    // 440 Hz tone instead of the fake camera and microphone.
    await sendColourAndTone(page, ['#ff0000', '#0000ff'], 440);
    // Listen while the bot is in the room.
    const heard = toneLevels(page, [440, 660], 10000);
    const reports = await botReports(server, 'mixed', 'bot-660', { color: 'green', tone: 660, seconds: 11 });
    const last = reports[reports.length - 1];
    assert.ok(last && last.fps >= 20, `bot received ${last && last.fps} fps`);
    const seen = reports.map((r) => (r.tiles.find((t) => t.id === browserId) || {}).center_rgb).filter(Boolean);
    assert.ok(seen.length >= 5, `bot's layout never had the browser's tile: ${JSON.stringify(last && last.tiles)}`);
    const red = seen.filter((c) => close(c, [255, 0, 0], 60)).length;
    const blue = seen.filter((c) => close(c, [0, 0, 255], 60)).length;
    assert.ok(red >= 1 && blue >= 1, `the browser's tile is not live (red ${red}, blue ${blue} of ${seen.length}): ${JSON.stringify(seen)}`);
    const levels = await heard;
    assert.ok(levels[660] > -60, `the bot's 660 Hz too quiet: ${JSON.stringify(levels)}`);
    assert.ok(levels[440] <= levels[660] - 20, `the browser hears its own 440 Hz: ${JSON.stringify(levels)}`);
    // a=ptime:40 in the offer: 25 packets a second, not 50.
    const rate = await audioPacketsPerSecond(page);
    assert.ok(rate > 20 && rate < 30, `the browser sends ${rate} audio packets a second`);
    assert.deepEqual(page.errors, []);
  } finally {
    await browser.close();
    await server.stop();
  }
});
