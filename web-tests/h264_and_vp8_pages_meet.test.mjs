// One room, two codecs: a Chromium page on the default codec (VP8), a
// Chromium page that answers with H.264 only (?codec=h264, which restricts
// the video transceiver with setCodecPreferences), and a `tessera bot
// --codec h264`. Each page receives and sends the codec it chose, decodes
// the grid at full rate, sees the other two colours in their tiles and
// hears the other two tones but not its own; the bot likewise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launch, newPage, join, decodedFps, mixPixel, close, until, botReports, sendColourAndTone, toneLevels, videoCodecs,
} from './helpers.mjs';

const PAGES = [
  { name: 'Vee', query: '', colour: '#ff0000', rgb: [255, 0, 0], tone: 440, codec: 'vp8' },
  { name: 'Aitch', query: '&codec=h264', colour: '#00ff00', rgb: [0, 255, 0], tone: 660, codec: 'h264' },
];
const BOT = { name: 'bot-h264', rgb: [0, 0, 255], tone: 880 };

/// The centre colour of participant `id`'s tile in the page's grid.
async function tileColour(page, id) {
  const t = await page.evaluate((x) => window.tessera.layout.tiles.find((tile) => tile.id === x), id);
  return t ? mixPixel(page, t.x + Math.round(t.width / 2), t.y + Math.round(t.height / 2)) : null;
}

test('VP8 and H.264 pages and an H.264 bot see and hear each other', { timeout: 120000 }, async () => {
  const server = await startServer();
  const browser = await launch();
  try {
    const pages = [];
    for (const p of PAGES) {
      const page = await newPage(browser);
      await join(page, server, 'codecs', p.name, p.query);
      await sendColourAndTone(page, p.colour, p.tone);
      pages.push(page);
    }
    const ids = await Promise.all(pages.map((p) => p.evaluate(() => window.tessera.id)));
    const bot = botReports(server, 'codecs', BOT.name, { color: 'blue', tone: BOT.tone, seconds: 16, extra: ['--codec', 'h264'] });
    for (const page of pages) {
      assert.ok(await until(() => page.evaluate(() => window.tessera.layout.tiles.length === 3), 10000), 'three tiles');
    }
    const botId = await pages[0].evaluate((mine) => window.tessera.layout.tiles.find((t) => !mine.includes(t.id)).id, ids);
    await new Promise((r) => setTimeout(r, 2000));

    for (const [i, page] of pages.entries()) {
      const me = PAGES[i];
      const codecs = await videoCodecs(page);
      assert.deepEqual(codecs, { inbound: me.codec, outbound: me.codec }, `${me.name}'s video codecs`);
      assert.equal(await page.evaluate(() => window.tessera.quality && window.tessera.quality.codec), me.codec, `${me.name}: the quality message names the codec`);
      const fps = await decodedFps(page, 3000);
      assert.ok(fps >= 25, `${me.name} decodes the grid at ${fps.toFixed(1)} fps`);
      const other = PAGES[1 - i];
      const seen = await until(async () => close(await tileColour(page, ids[1 - i]), other.rgb, 60), 3000);
      assert.ok(seen, `${me.name} sees ${await tileColour(page, ids[1 - i])} in ${other.name}'s tile`);
      const botSeen = await until(async () => close(await tileColour(page, botId), BOT.rgb, 60), 3000);
      assert.ok(botSeen, `${me.name} sees ${await tileColour(page, botId)} in the bot's tile`);
      const levels = await toneLevels(page, [me.tone, other.tone, BOT.tone], 3000);
      const quietest = Math.min(levels[other.tone], levels[BOT.tone]);
      assert.ok(quietest > -60, `${me.name} hears the others: ${JSON.stringify(levels)}`);
      assert.ok(levels[me.tone] <= quietest - 20, `${me.name} hears itself: ${JSON.stringify(levels)}`);
      assert.deepEqual(page.errors, [], `${me.name}: console errors`);
    }

    const reports = await bot;
    const last = reports[reports.length - 1];
    assert.ok(last && last.fps_recent >= 25, `the bot received ${last && last.fps_recent} fps`);
    assert.ok(last.received.includes('video/H264'), `the bot received ${last.received}`);
    assert.equal(last.qualities[last.qualities.length - 1].codec, 'h264');
    for (const [i, p] of PAGES.entries()) {
      const tile = last.tiles.find((t) => t.id === ids[i]);
      assert.ok(tile && close(tile.center_rgb, p.rgb, 60), `the bot sees ${tile && tile.center_rgb} in ${p.name}'s tile`);
    }
    const level = (hz) => Math.max(-200, ...last.dominant_frequencies.filter((f) => Math.abs(f.hz - hz) < 15).map((f) => f.db));
    assert.ok(level(440) > -40 && level(660) > -40, `the bot hears both pages: ${JSON.stringify(last.dominant_frequencies)}`);
    assert.ok(level(880) <= Math.min(level(440), level(660)) - 20, `the bot hears itself: ${JSON.stringify(last.dominant_frequencies)}`);
  } finally {
    await browser.close();
    await server.stop();
  }
});
