import { mkdirSync } from 'node:fs';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RunningBroker, startBrokerLocally } from '../../local/start.ts';
import { freePort } from '../support/free-port.ts';
import { CHROMIUM_ARGS, findChromium } from './chromium.ts';

const executablePath = findChromium();
if (!executablePath) {
  console.warn(
    'Browser suite skipped: no Chromium found (apt-get install chromium, or set CHROMIUM_PATH).',
  );
}

/**
 * The demo page of `npm start` in a real Chromium: the whole flow a person clicks through.
 */
describe.skipIf(!executablePath)('Demo page in Chromium', () => {
  let broker: RunningBroker;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    const port = await freePort();
    broker = await startBrokerLocally({ PORT: String(port), HOST: '127.0.0.1' });
    browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS });
  });

  afterAll(async () => {
    await browser?.close();
    await broker?.close();
  });

  afterEach(async (test) => {
    if (test.task.result?.state === 'fail' && page) {
      mkdirSync('test-results', { recursive: true });
      await page.screenshot({ path: `test-results/${test.task.name.replace(/\W+/g, '-')}.png` });
    }
    await context?.close();
  });

  async function newPage(): Promise<Page> {
    context = await browser.newContext();
    page = await context.newPage();
    return page;
  }

  const logText = () => page.locator('#log').textContent();

  it('logs in, refreshes, calls the API through an expiry, and logs out', async () => {
    const fake = broker.stack.salesforce;
    if (!fake) throw new Error('npm start without SALESFORCE_LOGIN_URL runs the mock org');
    await newPage();
    await page.goto(`${broker.url}/`);
    await expect.poll(() => page.locator('#status').textContent()).toBe('not logged in');

    // Log in at the mock org's login page
    await page.click('#login');
    await page.waitForURL(`${fake.url}/**`);
    expect(await page.locator('input[name="username"]').inputValue()).toBe('demo@example.com');
    await page.click('#allow');
    await page.waitForURL(`${broker.url}/`);
    await expect.poll(() => page.locator('#status').textContent()).toBe('logged in');
    expect(await page.locator('#version').textContent()).toBe('1');
    // GET /session names the connection and its user (the demo org's fake user).
    await expect
      .poll(() => page.locator('#connection').textContent())
      .toMatch(/^con_[A-Za-z0-9_-]{22}$/);
    expect(await page.locator('#who').textContent()).toMatch(/^user 005\w+ of org 00D\w+$/);
    expect(page.url()).not.toMatch(/code=|token/);

    // Cookies: the session cookie is there, with its attributes; the login cookie is gone
    const cookies = await context.cookies();
    const session = cookies.find((cookie) => cookie.name === '__Host-tb-session');
    expect(session).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict', path: '/' });
    expect(cookies.find((cookie) => cookie.name === '__Host-tb-login')).toBeUndefined();
    expect(await page.evaluate('document.cookie')).not.toContain('tb-session');

    // Refresh
    await page.click('#refresh');
    await expect.poll(() => page.locator('#version').textContent()).toBe('2');

    // API call, then expiry at the org: 401 INVALID_SESSION_ID -> /refresh -> retry
    await page.click('#call-api');
    await expect.poll(logText).toContain('records: ["Acme"]');
    await page.click('#expire');
    await expect.poll(logText).toContain('access tokens expired');
    await page.click('#call-api');
    await expect.poll(logText).toContain('(retry) -> 200');
    expect(await logText()).toContain('401 INVALID_SESSION_ID');
    expect(await page.locator('#version').textContent()).toBe('3');
    expect(await page.locator('#token').textContent()).toMatch(/\.\.\..*chars/);

    // Log out: revoked at the org, cookie cleared
    const revokesBefore = fake.calls.revoke;
    await page.click('#logout');
    await expect.poll(logText).toContain('POST /logout -> 204');
    expect(fake.calls.revoke).toBe(revokesBefore + 1);
    expect((await context.cookies()).find((c) => c.name === '__Host-tb-session')).toBeUndefined();
    await page.reload();
    await expect.poll(() => page.locator('#status').textContent()).toBe('not logged in');
  });

  it('starts clean: no error logged and only the login enabled before anyone logs in', async () => {
    // Act
    await newPage();
    await page.goto(`${broker.url}/`);
    await expect.poll(() => page.locator('#status').textContent()).toBe('not logged in');

    // Assert
    expect(await page.locator('#log li.error').count()).toBe(0);
    expect(await logText()).not.toContain('401');
    for (const id of ['refresh', 'call-api', 'expire', 'logout']) {
      expect(await page.locator(`#${id}`).isDisabled(), id).toBe(true);
    }
    expect(await page.locator('#login').isVisible()).toBe(true);
    expect(await page.locator('#login-error').isVisible()).toBe(false);
  });

  it.each([
    ['access_denied', 'The user denied access.'],
    ['login_failed', 'Salesforce issued no refresh token.'],
  ])(
    'shows a failed login (%s) from its query, logs it, and cleans the URL',
    async (code, text) => {
      // Prepare: where /callback sends the browser after a failed login (return_to=/)
      await newPage();
      const query = new URLSearchParams({ error: code, error_description: text, keep: '1' });

      // Act
      await page.goto(`${broker.url}/?${query}`);
      await expect.poll(() => page.locator('#status').textContent()).toBe('not logged in');

      // Assert: shown and logged, and gone from the address bar (other parameters stay)
      const banner = page.locator('#login-error');
      expect(await banner.isVisible()).toBe(true);
      expect(await banner.textContent()).toContain(code);
      expect(await banner.textContent()).toContain(text);
      expect(await page.locator('#log li.error').allTextContents()).toEqual([
        expect.stringContaining(`${code}: ${text}`),
      ]);
      expect(page.url()).toBe(`${broker.url}/?keep=1`);

      // A reload shows the page as it is, without the old error
      await page.reload();
      await expect.poll(() => page.locator('#status').textContent()).toBe('not logged in');
      expect(await banner.isVisible()).toBe(false);
      expect(await page.locator('#log li.error').count()).toBe(0);
    },
  );

  it('shows a clear error when the user denies access', async () => {
    await newPage();
    await page.goto(`${broker.url}/`);
    await page.click('#login');
    await page.click('#deny');
    // /callback sends the browser back to return_to (`/`) with the contract's error, which
    // the page shows and then removes from the address bar.
    await page.waitForURL(`${broker.url}/`);
    const banner = page.locator('#login-error');
    await expect.poll(() => banner.isVisible()).toBe(true);

    expect(await banner.textContent()).toContain('access_denied');
    expect(await banner.textContent()).toMatch(/not granted/);
    expect((await context.cookies()).find((c) => c.name === '__Host-tb-session')).toBeUndefined();
  });
});
