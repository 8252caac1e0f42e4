// Text chat between a participant page, a `tessera bot` and a watch-only
// viewer on a phone-sized screen: every message reaches everyone in order
// with the sender's name, markup shows as text (never as HTML), the bot
// joining late gets the history, and the phone's closed chat panel counts
// unread messages until opened. In Chromium and Firefox.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, join, openJoin, waitConnected, until, startBotReporting, BROWSERS } from './helpers.mjs';

const MARKUP = 'hello <b>everyone</b> & <img src=x onerror="window.pwned=1">';

async function say(page, text) {
  await page.fill('#chat-input', text);
  await page.click('#chat-send');
}

const texts = (page) => page.evaluate(() => window.tessera.chat.map((c) => `${c.name}: ${c.text}`));

for (const kind of BROWSERS) test(`chat between a page, a bot and a viewer (${kind})`, { timeout: 90000 }, async () => {
  const server = await startServer();
  const browser = await launchBrowser(kind);
  let bot = null;
  try {
    const ada = await newPage(browser);
    await join(ada, server, 'talk', 'Ada');
    // A viewer on a phone: the chat panel starts closed.
    const vi = await newPage(browser, { width: 390, height: 844 }, { granted: false });
    await openJoin(vi, server, 'talk');
    await vi.fill('#name', 'Vi');
    await vi.click('#watch-btn');
    await waitConnected(vi);
    assert.equal(await vi.isVisible('#chat-log'), false, 'the chat panel starts closed on a phone');

    await say(ada, MARKUP);
    // The bot joins after Ada spoke: the history brings her message.
    bot = startBotReporting(server, 'talk', 'Botty', { color: 'blue', tone: 700, extra: ['--say', 'bot says hi'] });
    const botSaw = await until(() => {
      const r = bot.last();
      return r && r.chat.length >= 2 ? r.chat : null;
    }, 20000);
    assert.ok(botSaw, `the bot's chat: ${JSON.stringify(bot.last() && bot.last().chat)}`);
    assert.deepEqual(botSaw.slice(0, 2).map((c) => [c.name, c.text]), [['Ada', MARKUP], ['Botty', 'bot says hi']]);

    // The phone, its chat closed, counts Ada's and the bot's messages as
    // unread; opening the chat reads them.
    assert.ok(await until(() => vi.evaluate(() => window.tessera.unread === 2), 5000), `unread on the phone: ${await vi.evaluate(() => window.tessera.unread)}`);
    assert.equal(await vi.evaluate(() => document.getElementById('chat-unread').textContent), '2');
    assert.equal(await vi.isVisible('#chat-unread'), true);
    await vi.click('#chat-btn');
    assert.equal(await vi.isVisible('#chat-log'), true);
    assert.equal(await vi.evaluate(() => window.tessera.unread), 0);
    assert.equal(await vi.isVisible('#chat-unread'), false);
    await say(vi, 'viewer here');
    const want = [`Ada: ${MARKUP}`, 'Botty: bot says hi', 'Vi: viewer here'];
    for (const [who, page] of [['Ada', ada], ['Vi', vi]]) {
      const got = await until(async () => { const t = await texts(page); return t.length >= 3 ? t : null; }, 10000);
      assert.deepEqual(got, want, `${who}'s chat`);
    }
    const r = await until(() => (bot.last() && bot.last().chat.length >= 3 ? bot.last() : null), 10000);
    assert.ok(r, 'the bot never got the viewer\'s message');
    assert.deepEqual(r.chat.map((c) => c.seq), [1, 2, 3], 'ordered, each once');
    assert.ok(r.chat.every((c) => c.at_ms > 1.7e12), 'server time on every message');

    // Shown as text: no element from the markup, nothing ran, the text intact.
    const shown = await ada.evaluate(() => ({
      elements: document.querySelectorAll('#chat-log b, #chat-log img').length,
      pwned: !!window.pwned,
      first: document.querySelector('#chat-log li .text').textContent,
      names: [...document.querySelectorAll('#chat-log .who')].map((e) => e.textContent),
    }));
    assert.deepEqual(shown, { elements: 0, pwned: false, first: MARKUP, names: ['Ada (you)', 'Botty', 'Vi'] });

    for (const p of [ada, vi]) assert.deepEqual(p.errors, []);
  } finally {
    if (bot) await bot.stop();
    await browser.close();
    await server.stop();
  }
});
