// One room, two codecs, two browsers: a Chromium page on the default codec
// (VP8), a Chromium page that answers with and sends H.264 only
// (?codec=h264: setCodecPreferences and the sender's codec), a Firefox ESR
// page (default codec), and a `tessera bot --codec h264`. Each page receives
// and sends the codec it chose, decodes the grid at full rate, sees every
// other colour in its tile and hears every other tone but not its own; the
// bot likewise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launch, launchFirefox, newPage, join, decodedFps, mixPixel, close, until, startBotReporting, sendColourAndTone, toneLevels,
  videoCodecs,
} from './helpers.mjs';

const PAGES = [
  { name: 'Vee', browser: 'chromium', query: '', colour: '#ff0000', rgb: [255, 0, 0], tone: 440, codec: 'vp8' },
  { name: 'Aitch', browser: 'chromium', query: '&codec=h264', colour: '#00ff00', rgb: [0, 255, 0], tone: 660, codec: 'h264' },
  { name: 'Fox', browser: 'firefox', query: '', colour: '#ff00ff', rgb: [255, 0, 255], tone: 550, codec: 'vp8' },
];
const BOT = { name: 'bot-h264', rgb: [0, 0, 255], tone: 880 };

/// The centre colour of participant `id`'s tile in the page's grid.
async function tileColour(page, id) {
  const t = await page.evaluate((x) => window.tessera.layout.tiles.find((tile) => tile.id === x), id);
  return t ? mixPixel(page, t.x + Math.round(t.width / 2), t.y + Math.round(t.height / 2)) : null;
}

test('VP8 and H.264 Chromium pages, a Firefox page and an H.264 bot see and hear each other', { timeout: 150000 }, async () => {
  // Four send a tone all the time: four talkers to mix.
  const server = await startServer(0, ['--audio-talkers', '4']);
  const browsers = { chromium: await launch(), firefox: await launchFirefox() };
  let bot = null;
  try {
    const pages = [];
    for (const p of PAGES) {
      const page = await newPage(browsers[p.browser]);
      // The high rung: the ladder's own tests cover moving between rungs.
      await join(page, server, 'codecs', p.name, `${p.query}&quality=high`);
      await sendColourAndTone(page, p.colour, p.tone);
      pages.push(page);
    }
    const ids = await Promise.all(pages.map((p) => p.evaluate(() => window.tessera.id)));
    // The bot stays until the pages are checked; its reports are read then.
    // On the high rung like the pages: on a loaded machine the automatic
    // ladder paused the bot's video (rung `audio`), which is the ladder's
    // business, not this test's.
    bot = startBotReporting(server, 'codecs', BOT.name, { color: 'blue', tone: BOT.tone, extra: ['--codec', 'h264', '--quality', 'high'] });
    for (const page of pages) {
      assert.ok(await until(() => page.evaluate(() => window.tessera.layout.tiles.length === 4), 10000), 'four tiles');
    }
    const botId = await pages[0].evaluate((mine) => window.tessera.layout.tiles.find((t) => !mine.includes(t.id)).id, ids);
    const everyone = [...PAGES.map((p, i) => ({ ...p, id: ids[i] })), { ...BOT, id: botId }];
    await new Promise((r) => setTimeout(r, 2000));

    for (const [i, page] of pages.entries()) {
      const me = PAGES[i];
      const codecs = await videoCodecs(page);
      assert.deepEqual(codecs, { inbound: me.codec, outbound: me.codec }, `${me.name}'s video codecs`);
      assert.equal(await page.evaluate(() => window.tessera.quality && window.tessera.quality.codec), me.codec, `${me.name}: the quality message names the codec`);
      const fps = await decodedFps(page, 3000);
      assert.ok(fps >= 25, `${me.name} (${me.browser}) decodes the grid at ${fps.toFixed(1)} fps`);
      const others = everyone.filter((o) => o.id !== ids[i]);
      for (const o of others) {
        const seen = await until(async () => close(await tileColour(page, o.id), o.rgb, 60), 3000);
        assert.ok(seen, `${me.name} sees ${await tileColour(page, o.id)} in ${o.name}'s tile`);
      }
      const levels = await toneLevels(page, [me.tone, ...others.map((o) => o.tone)], 3000);
      const quietest = Math.min(...others.map((o) => levels[o.tone]));
      assert.ok(quietest > -60, `${me.name} hears the others: ${JSON.stringify(levels)}`);
      assert.ok(levels[me.tone] <= quietest - 20, `${me.name} hears itself: ${JSON.stringify(levels)}`);
      assert.deepEqual(page.errors, [], `${me.name}: console errors`);
    }

    const last = bot.last();
    const rungs = last ? last.qualities.map((q) => `${q.rung}@${q.at_ms}`).join(' ') : '';
    assert.ok(last && last.fps_recent >= 25, `the bot received ${last && last.fps_recent} fps (rungs: ${rungs}; frames ${last && last.frames})`);
    assert.ok(last.received.includes('video/H264'), `the bot received ${last.received}`);
    assert.equal(last.qualities[last.qualities.length - 1].codec, 'h264');
    for (const [i, p] of PAGES.entries()) {
      const tile = last.tiles.find((t) => t.id === ids[i]);
      assert.ok(tile && close(tile.center_rgb, p.rgb, 60), `the bot sees ${tile && tile.center_rgb} in ${p.name}'s tile`);
    }
    const level = (hz) => Math.max(-200, ...last.dominant_frequencies.filter((f) => Math.abs(f.hz - hz) < 15).map((f) => f.db));
    const heard = PAGES.map((p) => level(p.tone));
    assert.ok(heard.every((db) => db > -40), `the bot hears every page: ${JSON.stringify(last.dominant_frequencies)}`);
    assert.ok(level(BOT.tone) <= Math.min(...heard) - 20, `the bot hears itself: ${JSON.stringify(last.dominant_frequencies)}`);
  } finally {
    if (bot) await bot.stop();
    await browsers.chromium.close();
    await browsers.firefox.close();
    await server.stop();
  }
});
