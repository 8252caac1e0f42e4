// Screenshots of the join screen and the room at desktop and phone sizes
// (written to test-output/browser); at 390x844 nothing overflows sideways
// and every control is reachable by keyboard with a visible label.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launch, newPage, openJoin, waitConnected, OUT } from './helpers.mjs';

const SIZES = { desktop: { width: 1280, height: 800 }, phone: { width: 390, height: 844 } };

test('join screen and room at desktop and phone sizes', { timeout: 90000 }, async () => {
  const server = await startServer();
  const browser = await launch();
  try {
    for (const [label, viewport] of Object.entries(SIZES)) {
      const page = await newPage(browser, viewport);
      await openJoin(page, server, `screens-${label}`);
      await page.fill('#name', `Screen ${label}`);
      await page.waitForFunction(() => document.getElementById('camera-select').options.length > 0);
      await page.screenshot({ path: `${OUT}/join-${label}.png`, fullPage: true });
      // Keyboard only: from the name field, Tab until the join button has
      // the focus, then Enter.
      await page.focus('#name');
      let tabs = 0;
      while (tabs < 20 && !(await page.evaluate(() => document.activeElement && document.activeElement.id === 'join-btn'))) {
        await page.keyboard.press('Tab');
        tabs += 1;
      }
      assert.ok(tabs < 20, `${label}: the join button is not reachable with Tab`);
      await page.keyboard.press('Enter');
      await waitConnected(page);
      await page.waitForTimeout(1500);
      await page.screenshot({ path: `${OUT}/room-${label}.png`, fullPage: true });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${label}: page is ${overflow}px wider than the viewport`);
      const unlabeled = await page.evaluate(() => [...document.querySelectorAll('button')]
        .filter((b) => !b.hidden && b.offsetParent !== null && !(b.textContent.trim() || b.getAttribute('aria-label'))).length);
      assert.equal(unlabeled, 0, 'every visible button has a label');
      // Toggle state is exposed as text and aria-pressed, not colour alone;
      // the microphone button is reached with Tab too.
      tabs = 0;
      while (tabs < 30 && !(await page.evaluate(() => document.activeElement && document.activeElement.id === 'mic-btn'))) {
        await page.keyboard.press('Tab');
        tabs += 1;
      }
      assert.ok(tabs < 30, `${label}: the microphone button is not reachable with Tab`);
      await page.keyboard.press('Enter');
      assert.equal(await page.getAttribute('#mic-btn', 'aria-pressed'), 'true');
      assert.equal((await page.textContent('#mic-btn')).trim(), 'Unmute');
      await page.click('#stats-btn');
      await page.waitForFunction(() => document.querySelectorAll('#stats-list dt').length >= 5, null, { timeout: 5000 });
      await page.screenshot({ path: `${OUT}/room-${label}-stats.png`, fullPage: true });
      assert.deepEqual(page.errors, [], `${label}: console errors`);
      await page.context().close();
    }
  } finally {
    await browser.close();
    await server.stop();
  }
});
