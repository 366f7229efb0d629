import { mkdirSync } from 'node:fs';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RunningBroker, startBrokerLocally } from '../../local/start.ts';
import { freePort } from '../support/free-port.ts';
import { CHROMIUM_ARGS, findChromium } from './chromium.ts';

const executablePath = findChromium();

interface TokenInPage {
  accessToken: string;
  version: number;
}

/**
 * The built client in Chromium, in two tabs of one browser (one session cookie): the demo
 * page's client example. Every `/refresh` the tabs send is counted at the browser.
 */
describe.skipIf(!executablePath)('Client in Chromium, two tabs', () => {
  let broker: RunningBroker;
  let browser: Browser;
  let context: BrowserContext;
  const pages: Page[] = [];
  let refreshes = 0;

  beforeAll(async () => {
    const port = await freePort();
    broker = await startBrokerLocally({ PORT: String(port), HOST: '127.0.0.1' });
    browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS });
    context = await browser.newContext();
    context.on('request', (request) => {
      if (new URL(request.url()).pathname === '/refresh' && request.method() === 'POST')
        refreshes++;
    });
  });

  afterEach(async (test) => {
    if (test.task.result?.state === 'fail') {
      mkdirSync('test-results', { recursive: true });
      for (const [index, page] of pages.entries()) {
        await page.screenshot({ path: `test-results/client-tab-${index}.png` });
      }
    }
  });

  afterAll(async () => {
    await browser?.close();
    await broker?.close();
  });

  const status = (page: Page) => page.locator('#status').textContent();
  /** The page's client (`window.brokerClient` of the demo's example): its current token. */
  const token = (page: Page): Promise<TokenInPage> =>
    page.evaluate(
      `brokerClient.getAccessToken().then(({ accessToken, version }) => ({ accessToken, version }))`,
    );

  it('shares the token between tabs, and one /refresh after an expiry serves both', async () => {
    // Prepare: log in in the first tab, open the second; both hold the session cookie
    const fake = broker.stack.salesforce;
    if (!fake) throw new Error('npm start without SALESFORCE_LOGIN_URL runs the mock org');
    const first = await context.newPage();
    pages.push(first);
    await first.goto(`${broker.url}/`);
    await first.click('#login');
    await first.click('#allow');
    await first.waitForURL(`${broker.url}/`);
    await expect.poll(() => status(first)).toBe('logged in');
    const second = await context.newPage();
    pages.push(second);
    await second.goto(`${broker.url}/`);
    await expect.poll(() => status(second)).toBe('logged in');

    // Act 1: the first tab's client asks the broker; the second's gets that token handed over
    refreshes = 0;
    const inFirst = await token(first);
    const inSecond = await token(second);
    const refreshesForBoth = refreshes;

    // Act 2: the org expires the token; both tabs call the API at once
    fake.expireAccessTokens();
    refreshes = 0;
    await Promise.all([first.click('#client-call'), second.click('#client-call')]);
    for (const page of [first, second]) {
      await expect.poll(() => page.locator('#log').textContent()).toMatch(/client: GET .* -> \d+/);
    }

    // Assert
    expect(refreshesForBoth).toBe(1);
    expect(inSecond).toEqual(inFirst);
    expect(refreshes).toBe(1);
    for (const page of [first, second]) {
      expect(await page.locator('#log').textContent()).toContain(
        `client: GET /services/data/v65.0/query -> 200, version ${inFirst.version + 1}`,
      );
    }
    expect(await token(first)).toEqual(await token(second));
  });

  it('a tab opened later takes the token from a tab that has it, with no /refresh', async () => {
    // Prepare: a first tab whose client holds a token
    const holder = pages[0];
    if (!holder) throw new Error('the first test opens the tabs');
    const held = await token(holder);
    const later = await context.newPage();
    pages.push(later);
    await later.goto(`${broker.url}/`);
    await expect.poll(() => status(later)).toBe('logged in');
    refreshes = 0;

    // Act
    const handed = await token(later);

    // Assert
    expect(handed).toEqual(held);
    expect(refreshes).toBe(0);
  });
});
