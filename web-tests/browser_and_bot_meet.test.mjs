// A browser and a `tessera bot` in one room: the bot finds the browser's
// live picture in its tile (the page sends a canvas alternating red and
// blue, and the bot sees both: not a frozen frame), and the browser hears
// the bot's tone (WebAudio analyser on the remote audio track) and not its
// own (the page sends a 440 Hz oscillator). In Chromium and Firefox.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, join, close, botReports, BROWSERS } from './helpers.mjs';

for (const kind of BROWSERS) test(`a browser and a bot see and hear each other (${kind})`, { timeout: 90000 }, async () => {
  const server = await startServer();
  const browser = await launchBrowser(kind);
  try {
    const page = await newPage(browser);
    await join(page, server, 'mixed', 'Browser');
    const browserId = await page.evaluate(() => window.tessera.id);
    // Send a picture that changes (red and blue, half a second each) and a
    // 440 Hz tone instead of the fake camera and microphone.
    await page.evaluate(async () => {
      const pc = window.tessera.pc;
      const c = document.createElement('canvas');
      c.width = 320; c.height = 240;
      const g = c.getContext('2d');
      let n = 0;
      const draw = () => { g.fillStyle = Math.floor(n++ / 15) % 2 ? '#0000ff' : '#ff0000'; g.fillRect(0, 0, 320, 240); };
      draw();
      const timer = setInterval(draw, 33);
      const vtrack = c.captureStream(30).getVideoTracks()[0];
      const ctx = new AudioContext();
      await ctx.resume();
      const osc = ctx.createOscillator();
      osc.frequency.value = 440;
      const gain = ctx.createGain();
      gain.gain.value = 0.3;
      const dst = ctx.createMediaStreamDestination();
      osc.connect(gain).connect(dst);
      osc.start();
      const atrack = dst.stream.getAudioTracks()[0];
      for (const sender of pc.getSenders()) {
        if (sender.track && sender.track.kind === 'video') await sender.replaceTrack(vtrack);
        else if (sender.track && sender.track.kind === 'audio') await sender.replaceTrack(atrack);
      }
      window.testSources = { timer, ctx, osc, vtrack, atrack };
    });
    // Listen while the bot is in the room.
    const heard = page.evaluate(async () => {
      const v = document.getElementById('mix');
      const stream = v.srcObject;
      const ctx = new AudioContext();
      await ctx.resume();
      const an = ctx.createAnalyser();
      an.fftSize = 8192;
      ctx.createMediaStreamSource(stream).connect(an);
      const bins = new Float32Array(an.frequencyBinCount);
      const hz = ctx.sampleRate / an.fftSize;
      const band = (f) => Math.max(...bins.slice(Math.floor((f - 20) / hz), Math.ceil((f + 20) / hz)));
      let best = { hz: 0, db: -Infinity };
      let at660 = -Infinity;
      let at440 = -Infinity;
      const until = performance.now() + 10000;
      while (performance.now() < until) {
        await new Promise((r) => setTimeout(r, 200));
        an.getFloatFrequencyData(bins);
        let peak = 0;
        for (let i = 1; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
        if (bins[peak] > best.db) best = { hz: peak * hz, db: bins[peak] };
        at660 = Math.max(at660, band(660));
        at440 = Math.max(at440, band(440));
      }
      return { ...best, at660, at440 };
    });
    const reports = await botReports(server, 'mixed', 'bot-660', { color: 'green', tone: 660, seconds: 11 });
    const last = reports[reports.length - 1];
    assert.ok(last && last.fps >= 20, `bot received ${last && last.fps} fps`);
    const seen = reports.map((r) => (r.tiles.find((t) => t.id === browserId) || {}).center_rgb).filter(Boolean);
    assert.ok(seen.length >= 5, `bot's layout never had the browser's tile: ${JSON.stringify(last && last.tiles)}`);
    const red = seen.filter((c) => close(c, [255, 0, 0], 60)).length;
    const blue = seen.filter((c) => close(c, [0, 0, 255], 60)).length;
    assert.ok(red >= 1 && blue >= 1, `the browser's tile is not live (red ${red}, blue ${blue} of ${seen.length}): ${JSON.stringify(seen)}`);
    const best = await heard;
    assert.ok(Math.abs(best.hz - 660) < 15, `dominant frequency in the browser: ${JSON.stringify(best)}`);
    assert.ok(best.at660 > -60, `660 Hz too quiet: ${JSON.stringify(best)}`);
    assert.ok(best.at440 <= best.at660 - 20, `the browser hears its own 440 Hz: ${JSON.stringify(best)}`);
    assert.deepEqual(page.errors, []);
  } finally {
    await browser.close();
    await server.stop();
  }
});
