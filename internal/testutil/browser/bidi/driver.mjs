// The Firefox side of Conclave's browser tests: a small process that the Go
// harness (internal/testutil/browser, firefox.go) starts and talks to over
// its standard input and output, one JSON object per line. It launches
// Debian's firefox-esr with puppeteer-core over WebDriver BiDi, Firefox's own
// remote agent, and carries out the harness's requests on its pages.
//
// Requests:  {"id": 1, "op": "launch", "executablePath": "...", "prefs": {...}, "args": [...]}
//            {"id": 2, "op": "newPage", "page": "Alice"}
//            {"id": 3, "op": "addScript", "page": "Alice", "source": "..."}
//            {"id": 4, "op": "navigate", "page": "Alice", "url": "https://...", "timeout": 30000}
//            {"id": 5, "op": "eval", "page": "Alice", "js": "1 + 1"}
//            {"id": 6, "op": "click", "page": "Alice", "selector": "#join", "timeout": 30000}
//            {"id": 7, "op": "closePage", "page": "Alice"}
//            {"id": 8, "op": "close"}
// Replies:   {"id": 5, "ok": true, "value": "2"}   (value: the JSON text of the
//            result; absent for undefined)
//            {"id": 5, "ok": false, "error": "..."}
// Events:    {"event": "console", "page": "Alice", "type": "log", "text": "...", "url": "...", "line": 3}
//            {"event": "exit", "reason": "..."}  (Firefox went away)
//
// Each page is opened in a browser context of its own (cookies, storage,
// IndexedDB), so that pages behave like separate people.

import { createInterface } from 'node:readline';
import puppeteer from 'puppeteer-core';

let browser = null;
const pages = new Map();

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function page(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no page named ${JSON.stringify(name)}`);
  return p;
}

const ops = {
  async launch(r) {
    browser = await puppeteer.launch({
      browser: 'firefox',
      protocol: 'webDriverBiDi',
      executablePath: r.executablePath,
      headless: r.headless ?? true,
      acceptInsecureCerts: true,
      extraPrefsFirefox: r.prefs ?? {},
      args: r.args ?? [],
      userDataDir: r.userDataDir || undefined,
      timeout: r.timeout ?? 60000,
      protocolTimeout: r.timeout ?? 60000,
      // The harness ends this process with its test; Firefox must go too.
      handleSIGINT: true,
      handleSIGTERM: true,
      handleSIGHUP: true,
    });
    // Firefox's own output goes to our standard error (never to standard
    // output, which carries the replies): the harness keeps the last lines
    // and shows them if Firefox goes away during a test.
    const proc = browser.process();
    proc?.stderr?.on('data', (c) => process.stderr.write(c));
    proc?.stdout?.on('data', (c) => process.stderr.write(c));
    browser.on('disconnected', () => send({ event: 'exit', reason: 'Firefox disconnected' }));
    return browser.version();
  },

  async newPage(r) {
    if (pages.has(r.page)) throw new Error(`page ${r.page} exists`);
    const ctx = await browser.createBrowserContext();
    // A window each: a tab behind another is hidden (visibilityState), and
    // the meeting page stops receiving video it does not show.
    const p = await ctx.newPage({ type: 'window' });
    pages.set(r.page, { ctx, page: p });
    p.on('console', (m) => {
      const loc = m.location?.() ?? {};
      send({ event: 'console', page: r.page, type: m.type(), text: m.text(), url: loc.url ?? '', line: loc.lineNumber ?? 0 });
    });
    p.on('pageerror', (err) => {
      send({ event: 'console', page: r.page, type: 'exception', text: String(err?.stack || err?.message || err) });
    });
    return null;
  },

  async addScript(r) {
    await page(r.page).page.evaluateOnNewDocument(r.source);
    return null;
  },

  async navigate(r) {
    await page(r.page).page.goto(r.url, { waitUntil: 'load', timeout: r.timeout ?? 30000 });
    return null;
  },

  async eval(r) {
    const v = await page(r.page).page.evaluate(r.js);
    return v === undefined ? undefined : JSON.stringify(v);
  },

  async click(r) {
    // Real pointer input (input.performActions), which gives the page the
    // user activation that getDisplayMedia demands; the locator waits until
    // the element is visible and stable.
    await page(r.page).page.locator(r.selector).setTimeout(r.timeout ?? 30000).click();
    return null;
  },

  async closePage(r) {
    const p = pages.get(r.page);
    if (!p) return null;
    pages.delete(r.page);
    await p.ctx.close();
    return null;
  },

  async close() {
    const b = browser;
    browser = null;
    await b?.close();
    return null;
  },
};

const lines = createInterface({ input: process.stdin });
lines.on('line', async (line) => {
  let r;
  try {
    r = JSON.parse(line);
  } catch (err) {
    send({ event: 'console', page: '', type: 'error', text: `driver: bad request ${line}: ${err.message}` });
    return;
  }
  try {
    const op = ops[r.op];
    if (!op) throw new Error(`unknown op ${r.op}`);
    if (r.op !== 'launch' && !browser) throw new Error('Firefox is not running');
    const value = await op(r);
    const reply = { id: r.id, ok: true };
    if (value !== undefined && value !== null) reply.value = r.op === 'eval' ? value : JSON.stringify(value);
    send(reply);
    if (r.op === 'close') process.exit(0);
  } catch (err) {
    send({ id: r.id, ok: false, error: String(err?.message || err) });
  }
});
// The harness closed our input: it is gone, and so is the test.
lines.on('close', async () => {
  try {
    await browser?.close();
  } finally {
    process.exit(0);
  }
});
