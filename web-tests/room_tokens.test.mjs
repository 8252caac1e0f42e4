// A server with an auth secret: a page opened from an invitation link with
// a token minted by `tessera token` joins (the room and the name come from
// the token); a page without a token, or with a bad one, says in words
// what is wrong instead of failing silently. In Chromium and Firefox.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startServer, launchBrowser, newPage, waitConnected, BIN, BROWSERS } from './helpers.mjs';

const SECRET = 'a-room-token-secret-0123';

function mint(...args) {
  return execFileSync(BIN, ['token', '--secret', SECRET, ...args], { encoding: 'utf8' }).trim();
}

for (const kind of BROWSERS) test(`an invitation link with a token joins; without one the page says why (${kind})`, { timeout: 60000 }, async () => {
  const server = await startServer(0, ['--auth-secret', SECRET]);
  const browser = await launchBrowser(kind);
  try {
    const page = await newPage(browser);
    const token = mint('--room', 'standup', '--identity', 'u1', '--name', 'Grace');
    await page.goto(`${server.url}/?token=${token}`);
    await page.waitForSelector('#join-btn');
    assert.equal(await page.inputValue('#room'), 'standup', 'room from the token');
    assert.equal(await page.inputValue('#name'), 'Grace', 'name from the token');
    await page.click('#join-btn');
    await waitConnected(page);
    const tiles = await page.evaluate(() => window.tessera.layout.tiles.map((t) => t.name));
    assert.deepEqual(tiles, ['Grace']);
    assert.match(await page.evaluate(() => location.search), /token=/, 'the link keeps its token');

    for (const [query, words] of [['', /invitation link with a room token/], ['?token=abc.def.ghi', /not valid for this server/]]) {
      const p = await newPage(browser);
      await p.goto(`${server.url}/${query}`);
      await p.waitForSelector('#join-btn');
      await p.fill('#name', 'Stranger');
      await p.click('#join-btn');
      await p.waitForSelector('#error:not([hidden])', { timeout: 10000 });
      const text = await p.textContent('#error');
      assert.match(text, words, `${query}: ${text}`);
      assert.equal(await p.evaluate(() => window.tessera.connected), false);
    }
    assert.deepEqual(page.errors, []);
  } finally {
    await browser.close();
    await server.stop();
  }
});
