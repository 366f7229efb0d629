import { describe, expect, it } from 'vitest';
import {
  BrokerError,
  createBrokerClient,
  ForbiddenError,
  ReauthenticationRequiredError,
  SessionEndedError,
  TemporarilyUnavailableError,
} from '../../../client/src/index.ts';

const BASE = 'https://auth.example.com';
const HANDLE = 'handle-canary-5f0c2d';

function tokenAnswer(version: number, extra: Record<string, unknown> = {}): Response {
  return Response.json({
    access_token: `00Dxx!token-v${version}`,
    instance_url: 'https://acme.my.salesforce.com',
    token_type: 'Bearer',
    issued_at: '1764680000000',
    version,
    ...extra,
  });
}

function brokerError(status: number, error: string, headers: Record<string, string> = {}) {
  return Response.json({ error, error_description: `described ${error}` }, { status, headers });
}

/** A fetch that answers from a script and records each request (no network). */
function scriptedFetch(answers: Array<Response | Error | ((request: Request) => Response)>) {
  const requests: Request[] = [];
  const bodies: string[] = [];
  const fetchFn = async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    requests.push(request);
    bodies.push(await request.clone().text());
    const next = answers.shift();
    if (next === undefined) throw new Error(`unexpected request ${request.method} ${request.url}`);
    if (next instanceof Error) throw next;
    return typeof next === 'function' ? next(request) : next;
  };
  return { fetchFn: fetchFn as typeof fetch, requests, bodies };
}

/** A clock whose sleeps only advance it. */
function fakeClock() {
  let now = 1_000_000;
  const sleeps: number[] = [];
  return {
    sleeps,
    clock: {
      now: () => now,
      sleep: async (ms: number) => {
        sleeps.push(ms);
        now += ms;
      },
    },
  };
}

describe('Client: createBrokerClient', () => {
  describe('Method: getAccessToken', () => {
    it('asks /refresh with the bearer handle once, then answers from memory', async () => {
      // Prepare
      const broker = scriptedFetch([tokenAnswer(3)]);
      const client = createBrokerClient({
        baseUrl: `${BASE}/`,
        credential: { bearer: HANDLE },
        fetch: broker.fetchFn,
      });

      // Act
      const first = await client.getAccessToken();
      const second = await client.getAccessToken();

      // Assert
      expect(first).toEqual({
        accessToken: '00Dxx!token-v3',
        instanceUrl: 'https://acme.my.salesforce.com',
        version: 3,
        issuedAt: '1764680000000',
      });
      expect(second).toBe(first);
      expect(broker.requests).toHaveLength(1);
      expect(broker.requests[0]?.method).toBe('POST');
      expect(broker.requests[0]?.url).toBe(`${BASE}/refresh`);
      expect(broker.requests[0]?.headers.get('authorization')).toBe(`Bearer ${HANDLE}`);
      expect(broker.bodies[0]).toBe('');
    });

    it('sends the cookie with X-CSRF: 1 and no Authorization in cookie mode', async () => {
      // Prepare
      const seen: RequestInit[] = [];
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: 'cookie',
        fetch: (async (_input: string | URL | Request, init?: RequestInit) => {
          seen.push(init ?? {});
          return tokenAnswer(1);
        }) as typeof fetch,
      });

      // Act
      await client.getAccessToken();

      // Assert
      expect(seen[0]?.credentials).toBe('include');
      expect(seen[0]?.headers).toEqual({ 'x-csrf': '1' });
    });

    it('sends the invalidated version as the hint, and shares one request between 100 callers', async () => {
      // Prepare
      const broker = scriptedFetch([tokenAnswer(1), tokenAnswer(2)]);
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: broker.fetchFn,
      });
      const dead = await client.getAccessToken();

      // Act
      client.invalidate(dead.version);
      const tokens = await Promise.all(Array.from({ length: 100 }, () => client.getAccessToken()));

      // Assert
      expect(broker.requests).toHaveLength(2);
      expect(JSON.parse(broker.bodies[1] ?? '')).toEqual({ version: 1 });
      expect(broker.requests[1]?.headers.get('content-type')).toBe('application/json');
      expect(new Set(tokens.map((token) => token.version))).toEqual(new Set([2]));
    });

    it('ignores an invalidation of an older version than the one it holds', async () => {
      // Prepare
      const broker = scriptedFetch([tokenAnswer(5)]);
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: broker.fetchFn,
      });
      await client.getAccessToken();

      // Act
      client.invalidate(4);
      const token = await client.getAccessToken();

      // Assert
      expect(token.version).toBe(5);
      expect(broker.requests).toHaveLength(1);
    });

    it('asks again when an invalidation arrives while the request for that version runs', async () => {
      // Prepare: the first answer is version 1, which a caller declares dead meanwhile
      let release = () => {};
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const answers = [tokenAnswer(1), tokenAnswer(2)];
      const bodies: string[] = [];
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: (async (_input: string | URL | Request, init?: RequestInit) => {
          bodies.push(String(init?.body ?? ''));
          if (bodies.length === 1) await gate;
          return answers.shift() as Response;
        }) as typeof fetch,
      });

      // Act
      const pending = client.getAccessToken();
      client.invalidate(1);
      release();
      const token = await pending;

      // Assert
      expect(token.version).toBe(2);
      expect(bodies).toEqual(['', '{"version":1}']);
    });

    it('asks again, with its version as the hint, once the token is within 30 s of expires_at', async () => {
      // Prepare: the clock at 1,000,000 ms; the first token expires 40 s later
      const { clock } = fakeClock();
      // expires_at is in whole seconds since the epoch.
      const expiry = (1_000_000 + 40_000) / 1000;
      const later = (1_000_000 + 3_600_000) / 1000;
      const broker = scriptedFetch([
        tokenAnswer(1, { expires_at: expiry }),
        tokenAnswer(2, { expires_at: later }),
      ]);
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: broker.fetchFn,
        clock,
      });

      // Act
      const first = await client.getAccessToken();
      const stillFirst = await client.getAccessToken();
      await clock.sleep(15_000);
      const second = await client.getAccessToken();

      // Assert
      expect(first.expiresAt).toBe(expiry * 1000);
      expect(stillFirst).toBe(first);
      expect(second.version).toBe(2);
      expect(broker.bodies).toEqual(['', '{"version":1}']);
    });

    it.each([
      [401, 'reauthentication_required', ReauthenticationRequiredError],
      [401, 'invalid_session', SessionEndedError],
      [403, 'csrf_check_failed', ForbiddenError],
      [502, 'upstream_misconfigured', BrokerError],
      [502, 'upstream_forbidden', BrokerError],
      [400, 'invalid_request', BrokerError],
    ])('maps %i %s to its error, without retrying', async (status, code, type) => {
      // Prepare
      const broker = scriptedFetch([brokerError(status, code)]);
      const { clock, sleeps } = fakeClock();
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: broker.fetchFn,
        clock,
      });

      // Act
      const error = await client.getAccessToken().catch((caught: unknown) => caught);

      // Assert
      expect(error).toBeInstanceOf(type);
      expect(error).toMatchObject({ code, status, message: `described ${code}` });
      expect(broker.requests).toHaveLength(1);
      expect(sleeps).toEqual([]);
    });

    it('carries the login URL on the errors that need a new login', async () => {
      // Prepare
      const broker = scriptedFetch([
        brokerError(401, 'reauthentication_required'),
        brokerError(401, 'invalid_session'),
      ]);
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: broker.fetchFn,
      });

      // Act
      const reauthenticate = await client.getAccessToken().catch((caught: unknown) => caught);
      const ended = await client.getAccessToken().catch((caught: unknown) => caught);

      // Assert
      expect(reauthenticate).toMatchObject({ loginUrl: `${BASE}/login` });
      expect(ended).toMatchObject({ loginUrl: `${BASE}/login` });
    });

    it("maps API Gateway's IAM refusal to ForbiddenError", async () => {
      // Prepare
      const broker = scriptedFetch([Response.json({ message: 'Forbidden' }, { status: 403 })]);
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: broker.fetchFn,
      });

      // Act
      const error = await client.getAccessToken().catch((caught: unknown) => caught);

      // Assert
      expect(error).toBeInstanceOf(ForbiddenError);
      expect(error).toMatchObject({ code: 'forbidden', status: 403 });
    });

    it('retries a 503 after its Retry-After, within the budget', async () => {
      // Prepare
      const broker = scriptedFetch([
        brokerError(503, 'temporarily_unavailable', { 'retry-after': '3' }),
        brokerError(503, 'temporarily_unavailable', { 'retry-after': '2' }),
        tokenAnswer(7),
      ]);
      const { clock, sleeps } = fakeClock();
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: broker.fetchFn,
        clock,
        retryBudgetMs: 10_000,
      });

      // Act
      const token = await client.getAccessToken();

      // Assert
      expect(token.version).toBe(7);
      expect(sleeps).toEqual([3000, 2000]);
    });

    it('gives up with TemporarilyUnavailableError when Retry-After would overrun the budget', async () => {
      // Prepare
      const broker = scriptedFetch([
        brokerError(503, 'temporarily_unavailable', { 'retry-after': '4' }),
        brokerError(503, 'temporarily_unavailable', { 'retry-after': '12' }),
      ]);
      const { clock, sleeps } = fakeClock();
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: broker.fetchFn,
        clock,
        retryBudgetMs: 10_000,
      });

      // Act
      const error = await client.getAccessToken().catch((caught: unknown) => caught);

      // Assert
      expect(error).toBeInstanceOf(TemporarilyUnavailableError);
      expect(error).toMatchObject({ code: 'temporarily_unavailable', retryAfterSeconds: 12 });
      expect(sleeps).toEqual([4000]);
      expect(broker.requests).toHaveLength(2);
    });

    it("backs off with jitter on API Gateway's 429 and 503, which carry no Retry-After", async () => {
      // Prepare
      const broker = scriptedFetch([
        Response.json({ message: 'Too Many Requests' }, { status: 429 }),
        Response.json({ message: 'Service Unavailable' }, { status: 503 }),
        tokenAnswer(2),
      ]);
      const { clock, sleeps } = fakeClock();
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: broker.fetchFn,
        clock,
      });

      // Act
      const token = await client.getAccessToken();

      // Assert: 1 s then 2 s, each times 0.5-1.5
      expect(token.version).toBe(2);
      expect(sleeps).toHaveLength(2);
      expect(sleeps[0]).toBeGreaterThanOrEqual(500);
      expect(sleeps[0]).toBeLessThanOrEqual(1500);
      expect(sleeps[1]).toBeGreaterThanOrEqual(1000);
      expect(sleeps[1]).toBeLessThanOrEqual(3000);
    });

    it("retries API Gateway's 500 once, not twice", async () => {
      // Prepare
      const gateway500 = () => Response.json({ message: 'Internal Server Error' }, { status: 500 });
      const broker = scriptedFetch([gateway500(), gateway500()]);
      const { clock, sleeps } = fakeClock();
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: broker.fetchFn,
        clock,
      });

      // Act
      const error = await client.getAccessToken().catch((caught: unknown) => caught);

      // Assert
      expect(error).toBeInstanceOf(BrokerError);
      expect(error).toMatchObject({ code: 'gateway_error', status: 500 });
      expect(broker.requests).toHaveLength(2);
      expect(sleeps).toHaveLength(1);
    });

    it('retries a network failure as temporary, and says so when the budget is spent', async () => {
      // Prepare
      const broker = scriptedFetch([
        new TypeError('fetch failed'),
        new TypeError('fetch failed'),
        new TypeError('fetch failed'),
      ]);
      const { clock } = fakeClock();
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: broker.fetchFn,
        clock,
        retryBudgetMs: 4_000,
      });

      // Act
      const error = await client.getAccessToken().catch((caught: unknown) => caught);

      // Assert
      expect(error).toBeInstanceOf(TemporarilyUnavailableError);
      expect(error).toMatchObject({ code: 'network_error', status: 0 });
      expect(broker.requests.length).toBeGreaterThanOrEqual(2);
    });

    it.each([
      ['no access_token', { access_token: undefined }],
      ['a non-URL instance_url', { instance_url: 'acme' }],
      ['a string version', { version: '2' }],
      ['no issued_at', { issued_at: undefined }],
      ['another token_type', { token_type: 'MAC' }],
    ])('refuses an answer with %s', async (_what, change) => {
      // Prepare
      const broker = scriptedFetch([tokenAnswer(2, change)]);
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: broker.fetchFn,
      });

      // Act
      const error = await client.getAccessToken().catch((caught: unknown) => caught);

      // Assert
      expect(error).toBeInstanceOf(BrokerError);
      expect(error).toMatchObject({ code: 'invalid_response' });
    });

    it('refuses an answer whose version does not pass the dead one', async () => {
      // Prepare
      const broker = scriptedFetch([tokenAnswer(4), tokenAnswer(4)]);
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: broker.fetchFn,
      });
      await client.getAccessToken();
      client.invalidate(4);

      // Act
      const error = await client.getAccessToken().catch((caught: unknown) => caught);

      // Assert
      expect(error).toMatchObject({ code: 'invalid_response' });
    });

    it('keeps the handle and the tokens out of its errors', async () => {
      // Prepare: every kind of failure, with the handle and a token about
      const broker = scriptedFetch([
        tokenAnswer(1),
        brokerError(401, 'invalid_session'),
        new TypeError(`fetch failed`),
      ]);
      const { clock } = fakeClock();
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: broker.fetchFn,
        clock,
        retryBudgetMs: 0,
      });
      const token = await client.getAccessToken();
      client.invalidate(token.version);

      // Act
      const ended = await client.getAccessToken().catch((caught: unknown) => caught);
      const lost = await client.getAccessToken().catch((caught: unknown) => caught);

      // Assert
      for (const error of [ended, lost]) {
        const text = `${String(error)} ${JSON.stringify(error)} ${(error as Error).stack}`;
        expect(text).not.toContain(HANDLE);
        expect(text).not.toContain(token.accessToken);
      }
    });
  });

  describe('Method: fetch', () => {
    const expired = () =>
      Response.json([{ message: 'Session expired or invalid', errorCode: 'INVALID_SESSION_ID' }], {
        status: 401,
      });

    it('adds the token, resolves a relative URL on the instance, and passes other answers on', async () => {
      // Prepare
      const calls = scriptedFetch([tokenAnswer(1), Response.json({ totalSize: 1 })]);
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: calls.fetchFn,
      });

      // Act
      const response = await client.fetch('/services/data/v65.0/query?q=SELECT+Id+FROM+Account');

      // Assert
      expect(await response.json()).toEqual({ totalSize: 1 });
      expect(calls.requests[1]?.url).toBe(
        'https://acme.my.salesforce.com/services/data/v65.0/query?q=SELECT+Id+FROM+Account',
      );
      expect(calls.requests[1]?.headers.get('authorization')).toBe('Bearer 00Dxx!token-v1');
    });

    it('on 401 INVALID_SESSION_ID invalidates, gets a new token and retries once, body included', async () => {
      // Prepare
      const calls = scriptedFetch([tokenAnswer(1), expired(), tokenAnswer(2), expired()]);
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: calls.fetchFn,
      });

      // Act
      const response = await client.fetch(
        'https://acme.my.salesforce.com/services/data/v65.0/sobjects/Account',
        {
          method: 'POST',
          body: '{"Name":"Acme"}',
        },
      );

      // Assert: the second 401 is returned, not retried again
      expect(response.status).toBe(401);
      expect(calls.requests).toHaveLength(4);
      expect(calls.bodies[2]).toBe('{"version":1}');
      expect(calls.requests[3]?.headers.get('authorization')).toBe('Bearer 00Dxx!token-v2');
      expect(calls.bodies[3]).toBe('{"Name":"Acme"}');
      expect(calls.requests[3]?.method).toBe('POST');
    });

    it.each([
      [
        'the REST API is not allowed for the session',
        [
          {
            message: 'This session is not valid for use with the REST API',
            errorCode: 'INVALID_SESSION_ID',
          },
        ],
      ],
      ['another error code', [{ message: 'nope', errorCode: 'INSUFFICIENT_ACCESS' }]],
      ['a body that is not JSON', 'Bad_OAuth_Token'],
    ])('does not retry a 401 when %s', async (_case, body) => {
      // Prepare
      const answer =
        typeof body === 'string'
          ? new Response(body, { status: 401 })
          : Response.json(body, { status: 401 });
      const calls = scriptedFetch([tokenAnswer(1), answer]);
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: calls.fetchFn,
      });

      // Act
      const response = await client.fetch('/services/data/v65.0/limits');

      // Assert: returned unread, the token still in use
      expect(response.status).toBe(401);
      expect(await response.text()).toBe(typeof body === 'string' ? body : JSON.stringify(body));
      expect(calls.requests).toHaveLength(2);
      expect(client.peek()?.version).toBe(1);
      expect(await client.getAccessToken()).toMatchObject({ version: 1 });
    });

    it('shares one /refresh between 20 calls that hit the same expiry', async () => {
      // Prepare
      let refreshes = 0;
      let version = 1;
      const client = createBrokerClient({
        baseUrl: BASE,
        credential: { bearer: HANDLE },
        fetch: (async (input: string | URL | Request, init?: RequestInit) => {
          const request = new Request(input, init);
          if (request.url === `${BASE}/refresh`) {
            refreshes++;
            return tokenAnswer(refreshes === 1 ? 1 : ++version);
          }
          return request.headers.get('authorization') === 'Bearer 00Dxx!token-v2'
            ? Response.json({ ok: true })
            : expired();
        }) as typeof fetch,
      });
      await client.getAccessToken();

      // Act
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => client.fetch('/services/data/v65.0/limits')),
      );

      // Assert
      expect(answers.map((answer) => answer.status)).toEqual(Array(20).fill(200));
      expect(refreshes).toBe(2);
    });
  });
});
