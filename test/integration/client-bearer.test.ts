import jsforce from 'jsforce';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createBrokerClient, jsforceRefreshFn } from '../../client/src/index.ts';
import { type RunningBroker, startBrokerLocally } from '../../local/start.ts';
import { freePort } from '../support/free-port.ts';
import { handoffLogin, TEST_APP } from '../support/handoff-login.ts';

/**
 * The client against `npm start` (the entry files, dynalite, the emulators, the mock org),
 * with a bearer handle from the one-time handoff, as a server-side app holds it. `/refresh`
 * calls are counted in the broker's own logs (one `refresh answered` line per answer).
 */
describe('Client with a bearer handle against npm start', () => {
  let broker: RunningBroker;
  let logLines: string[] = [];

  beforeAll(async () => {
    const port = await freePort();
    broker = await startBrokerLocally({
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_URL: `http://127.0.0.1:${port}`,
      CLIENT_APPS: JSON.stringify([TEST_APP]),
    });
  });

  beforeEach(() => {
    logLines = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      logLines.push(...String(chunk).split('\n').filter(Boolean));
      return true;
    });
  });

  afterEach(() => {
    vi.restoreAllMocks();
  });

  afterAll(async () => {
    await broker?.close();
  });

  const refreshesAnswered = () =>
    logLines.filter((line) => line.includes('"message":"refresh answered"')).length;

  function fake() {
    const salesforce = broker.stack.salesforce;
    if (!salesforce) throw new Error('npm start without SALESFORCE_LOGIN_URL runs the mock org');
    return salesforce;
  }

  it('100 concurrent getAccessToken after an invalidation make one /refresh', async () => {
    // Prepare
    const { handle } = await handoffLogin(broker.url);
    const client = createBrokerClient({ baseUrl: broker.url, credential: { bearer: handle } });
    const first = await client.getAccessToken();
    client.invalidate(first.version);
    fake().resetCalls();
    logLines = [];

    // Act
    const tokens = await Promise.all(Array.from({ length: 100 }, () => client.getAccessToken()));

    // Assert
    expect(refreshesAnswered()).toBe(1);
    expect(fake().calls.tokenRefresh).toBe(1);
    expect(new Set(tokens.map((token) => token.version))).toEqual(new Set([first.version + 1]));
    expect(new Set(tokens.map((token) => token.accessToken)).size).toBe(1);
    expect(tokens[0]?.accessToken).not.toBe(first.accessToken);
  });

  it('fetch retries a REST call once through an expiry, with one /refresh', async () => {
    // Prepare
    const { handle } = await handoffLogin(broker.url);
    const client = createBrokerClient({ baseUrl: broker.url, credential: { bearer: handle } });
    const before = await client.getAccessToken();
    fake().expireAccessTokens();
    fake().resetCalls();
    logLines = [];

    // Act
    const answers = await Promise.all(
      Array.from({ length: 10 }, () =>
        client.fetch(
          `/services/data/v65.0/query?q=${encodeURIComponent('SELECT Id, Name FROM Account')}`,
        ),
      ),
    );

    // Assert
    expect(answers.map((answer) => answer.status)).toEqual(Array(10).fill(200));
    const body = (await answers[0]?.json()) as { records: Array<{ Name: string }> } | undefined;
    expect(body?.records[0]?.Name).toBe('Acme');
    expect(refreshesAnswered()).toBe(1);
    expect(fake().calls.tokenRefresh).toBe(1);
    expect(client.peek()?.version).toBe(before.version + 1);
  });

  it('jsforce with jsforceRefreshFn: 20 parallel queries after expiry make one token call', async () => {
    // Prepare: four jsforce connections sharing one client, all on the soon-dead token
    const { handle } = await handoffLogin(broker.url);
    const client = createBrokerClient({ baseUrl: broker.url, credential: { bearer: handle } });
    const start = await client.getAccessToken();
    const connections = Array.from(
      { length: 4 },
      () =>
        new jsforce.Connection({
          instanceUrl: start.instanceUrl,
          accessToken: start.accessToken,
          version: '65.0',
          refreshFn: jsforceRefreshFn(client),
        }),
    );
    const warm = await connections[0]?.query('SELECT Id, Name FROM Account');
    fake().expireAccessTokens();
    fake().resetCalls();
    logLines = [];

    // Act
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, index) =>
        connections[index % 4]?.query<{ Name: string }>('SELECT Id, Name FROM Account'),
      ),
    );

    // Assert
    expect(warm?.totalSize).toBeGreaterThan(0);
    expect(results.every((result) => result?.records[0]?.Name === 'Acme')).toBe(true);
    expect(fake().calls.tokenRefresh).toBe(1);
    expect(refreshesAnswered()).toBe(1);
    expect(fake().reuseRevocations).toBe(0);
  });

  it('a logged-out handle gets SessionEndedError with the login URL', async () => {
    // Prepare
    const { handle } = await handoffLogin(broker.url);
    const client = createBrokerClient({ baseUrl: broker.url, credential: { bearer: handle } });
    await fetch(`${broker.url}/logout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${handle}` },
    });

    // Act
    const error = await client.getAccessToken().catch((caught: unknown) => caught);

    // Assert
    expect(error).toMatchObject({
      name: 'SessionEndedError',
      code: 'invalid_session',
      status: 401,
      loginUrl: `${broker.url}/login`,
    });
  });
});
