/**
 * The IAM grants of `infra/token-broker.ts` against what the functions really call: every
 * route runs its real entry composition (`buildRuntime` + the route, one runtime per
 * function as in Lambda) against dynalite, the KMS and Secrets Manager emulators and the
 * fake Salesforce, and the operations each one sent (with the kind of item each DynamoDB
 * call touched) are compared with its grant. A new AWS call without a grant fails here
 * instead of as AccessDenied after `cdk deploy`.
 */
import { readFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDbSessionStore } from '../../functions/aws/dynamodb-session-store.ts';
import { EventBridgeBus } from '../../functions/aws/eventbridge-bus.ts';
import { createPublisherHandler } from '../../functions/aws/stream-publisher.ts';
import { codeChallengeS256, newCodeVerifier } from '../../functions/broker/pkce.ts';
import type { HttpHandler } from '../../functions/http/route.ts';
import { createCallbackHandler } from '../../functions/routes/callback.ts';
import { createLoginHandler } from '../../functions/routes/login.ts';
import { createLogoutHandler } from '../../functions/routes/logout.ts';
import { createRefreshHandler } from '../../functions/routes/refresh.ts';
import { createServiceHandler } from '../../functions/routes/service.ts';
import { createSessionHandler } from '../../functions/routes/session.ts';
import { createTokenHandler } from '../../functions/routes/token.ts';
import { buildRuntime } from '../../functions/runtime.ts';
import type { BrokerRoute } from '../../infra/settings.ts';
import { FUNCTION_ACCESS, ITEM_PREFIX, PUBLISHER_ACCESS } from '../../infra/token-broker.ts';
import { startEventBridgeEmulator } from '../../local/eventbridge-emulator.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { repoRoot } from './synth.ts';

const CALLBACK_URL = 'https://broker.example.com/callback';
const APP_REDIRECT = 'com.example.app:/oauth2redirect';
const ORIGIN = 'https://app.example.com';

/** `dynamodb:<Action> <prefix>`, `kms:<Action>`, `secretsmanager:<Action>` as granted. */
const granted = (route: BrokerRoute) =>
  [
    ...FUNCTION_ACCESS[route].items.flatMap(({ kind, actions }) =>
      actions.map((action) => `${action} ${ITEM_PREFIX[kind]}`),
    ),
    ...FUNCTION_ACCESS[route].kms,
    ...(FUNCTION_ACCESS[route].clientSecret ? ['secretsmanager:GetSecretValue'] : []),
    ...(FUNCTION_ACCESS[route].queriesConnectionIndex ? ['dynamodb:Query index'] : []),
  ].sort();

describe('IAM grants: FUNCTION_ACCESS against the calls the functions make', () => {
  let stack: LocalStack;
  const handlers = {} as Record<BrokerRoute, HttpHandler>;
  const used: Record<BrokerRoute, Set<string>> = {
    refresh: new Set(),
    login: new Set(),
    callback: new Set(),
    logout: new Set(),
    session: new Set(),
    token: new Set(),
    service: new Set(),
  };

  /** DynamoDB requests seen by the recording proxy: `dynamodb:<Action> <key prefix>`. */
  const dynamodbRequests: string[] = [];
  /** Requests (as recorded) whose next answer the proxy drops after they were applied. */
  const dropAnswers = new Set<string>();
  /** Requests (as recorded) the proxy answers once with a 400 instead of forwarding. */
  const failRequests = new Set<string>();
  let proxy: Server;

  /** Runs `act` as `route` and records the AWS operations it sent. */
  async function as<T>(route: BrokerRoute, act: () => Promise<T>): Promise<T> {
    const counters = [stack.kms.calls, stack.secretsManager.calls];
    for (const calls of counters) for (const key of Object.keys(calls)) delete calls[key];
    dynamodbRequests.length = 0;
    const result = await act();
    for (const operation of Object.keys(stack.kms.calls)) used[route].add(`kms:${operation}`);
    for (const operation of Object.keys(stack.secretsManager.calls)) {
      used[route].add(`secretsmanager:${operation}`);
    }
    for (const call of dynamodbRequests) used[route].add(call);
    return result;
  }

  const sample = (name: string) =>
    JSON.parse(
      readFileSync(join(repoRoot, 'events', `${name}.json`), 'utf8'),
    ) as APIGatewayProxyEventV2;

  /**
   * `/login` then the fake's auto-approved authorize then `/callback`: a new handle. With
   * `replacing`, the browser still holds that session, which the new login ends.
   */
  async function signIn(replacing?: string): Promise<string> {
    const loginEvent = sample('login');
    if (replacing) loginEvent.cookies = [`__Host-tb-session=${replacing}`];
    const login = await as('login', () => handlers.login(loginEvent));
    expect(login.statusCode).toBe(302);
    const authorize = String(login.headers?.location);
    const loginCookie = (login.cookies ?? [])[0]?.split(';')[0] ?? '';
    const approved = await fetch(authorize, { redirect: 'manual' });
    const redirect = new URL(approved.headers.get('location') ?? '');
    expect(`${redirect.origin}${redirect.pathname}`).toBe(CALLBACK_URL);

    const event = sample('callback');
    event.rawQueryString = redirect.search.slice(1);
    event.queryStringParameters = Object.fromEntries(redirect.searchParams);
    event.cookies = [loginCookie];
    const callback = await as('callback', () => handlers.callback(event));
    expect(callback.statusCode, callback.body).toBe(302);
    const session = (callback.cookies ?? []).find((c) => c.startsWith('__Host-tb-session='));
    return session?.split(';')[0]?.split('=')[1] ?? '';
  }

  /**
   * A registered app's login (`/login?client_id=...`, the fake's auto-approval,
   * `/callback`), then `POST /token` with `redeem` times the broker code: the first
   * redemption's answer.
   */
  async function handOff(redeem: number, presentedVerifier?: string): Promise<number> {
    const verifier = newCodeVerifier();
    const loginEvent = sample('login');
    loginEvent.cookies = [];
    loginEvent.rawQueryString = new URLSearchParams({
      client_id: 'ios',
      redirect_uri: APP_REDIRECT,
      state: 'app-state',
      code_challenge: codeChallengeS256(verifier),
      code_challenge_method: 'S256',
    }).toString();
    const login = await as('login', () => handlers.login(loginEvent));
    expect(login.statusCode, login.body).toBe(302);
    const approved = await fetch(String(login.headers?.location), { redirect: 'manual' });
    const redirect = new URL(approved.headers.get('location') ?? '');
    const event = sample('callback');
    event.rawQueryString = redirect.search.slice(1);
    event.queryStringParameters = Object.fromEntries(redirect.searchParams);
    event.cookies = [(login.cookies ?? [])[0]?.split(';')[0] ?? ''];
    const callback = await as('callback', () => handlers.callback(event));
    expect(callback.statusCode, callback.body).toBe(302);
    const location = String(callback.headers?.location);
    const code = new URLSearchParams(location.slice(location.indexOf('?') + 1)).get('code');
    if (redeem === 0) return 0;
    const tokenEvent = sample('token');
    tokenEvent.body = new URLSearchParams({
      grant_type: 'authorization_code',
      code: code ?? '',
      redirect_uri: APP_REDIRECT,
      client_id: 'ios',
      code_verifier: presentedVerifier ?? verifier,
    }).toString();
    const statuses: number[] = [];
    for (let attempt = 0; attempt < redeem; attempt++) {
      statuses.push((await as('token', () => handlers.token(tokenEvent))).statusCode ?? 0);
    }
    expect(statuses.slice(1).every((status) => status === 400)).toBe(true);
    return statuses[0] ?? 0;
  }

  const refresh = (handle: string, version: number) => {
    const event = sample('refresh');
    event.headers = { ...event.headers, authorization: `Bearer ${handle}` };
    event.body = JSON.stringify({ version });
    return handlers.refresh(event);
  };

  beforeAll(async () => {
    stack = await startLocalStack({ salesforce: { autoApprove: true, tokenLatencyMs: 150 } });
    proxy = await recordingProxy(stack.dynamodbUrl, dynamodbRequests, dropAnswers, failRequests);
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    // The SDK clients read AWS_ENDPOINT_URL_<SERVICE> and credentials from process.env.
    Object.assign(process.env, stack.env, { AWS_ENDPOINT_URL_DYNAMODB: proxyUrl });
    const env = {
      ...stack.env,
      AWS_ENDPOINT_URL_DYNAMODB: proxyUrl,
      CALLBACK_URL,
      ALLOWED_ORIGINS: ORIGIN,
      LEASE_MS: '3000',
      UPSTREAM_TIMEOUT_MS: '1500',
      WAIT_BUDGET_MS: '2500',
      POWERTOOLS_METRICS_DISABLED: 'true',
      CLIENT_APPS: JSON.stringify([{ client_id: 'ios', redirect_uris: [APP_REDIRECT] }]),
    };
    const silent = { debug() {}, info() {}, warn() {}, error() {} };
    const metrics = { count() {}, timing() {}, flush() {} };
    const runtime = () => buildRuntime(env, { log: silent, metrics });
    handlers.login = createLoginHandler(runtime());
    handlers.callback = createCallbackHandler(runtime());
    handlers.refresh = createRefreshHandler(runtime());
    handlers.logout = createLogoutHandler(runtime());
    handlers.session = createSessionHandler(runtime());
    handlers.token = createTokenHandler(runtime());
    handlers.service = createServiceHandler(runtime());

    // A full life: sign in, refresh (holder and waiter), lose the grant, sign in, log out.
    const first = await signIn();
    const refreshed = await as('refresh', () => refresh(first, 1));
    expect(refreshed.statusCode, refreshed.body).toBe(200);
    const both = await as('refresh', () => Promise.all([refresh(first, 2), refresh(first, 2)]));
    expect(both.map((r) => r.statusCode)).toEqual([200, 200]);
    // The connected app refused (invalid_client, also after the secret's re-read): the
    // Upstream Misconfigured alert item is put (PutItem alert#).
    stack.salesforce?.inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_client',
      description: 'invalid client credentials',
      times: 2,
    });
    const refused = await as('refresh', () => refresh(first, 3));
    expect(refused.statusCode, refused.body).toBe(502);
    stack.salesforce?.inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_grant',
      description: 'expired access/refresh token',
      times: 1,
    });
    const lost = await as('refresh', () => refresh(first, 3));
    expect(lost.statusCode, lost.body).toBe(401);
    // Its handle comes back: the tombstone answers (GetItem ended#), no upstream call.
    const again = await as('refresh', () => refresh(first, 3));
    expect(again.body).toContain('reauthentication_required');

    // A connection pointer written with its answer lost is read back (GetItem connection#),
    // and so are the login transaction's put and its consuming update (GetItem login#).
    dropAnswers.add('dynamodb:PutItem connection#');
    dropAnswers.add('dynamodb:PutItem login#');
    dropAnswers.add('dynamodb:UpdateItem login#');
    const second = await signIn();
    expect(dropAnswers.size, 'the pointer answer was dropped').toBe(0);
    // A code exchange the connected app refuses raises the alert too (PutItem alert#);
    // the alert's quiet period is per app, so the store's condition refuses this one,
    // which is a call all the same.
    stack.salesforce?.inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_client',
      description: 'invalid client credentials',
      times: 2,
    });
    await signIn().catch(() => '');
    const sessionEvent = sample('session');
    sessionEvent.headers = { ...sessionEvent.headers, authorization: `Bearer ${second}` };
    const described = await as('session', () => handlers.session(sessionEvent));
    expect(described.statusCode, described.body).toBe(200);
    // Logging in again from a browser that holds a session replaces it (revoke + delete).
    const third = await signIn(second);
    const logoutEvent = sample('logout');
    logoutEvent.cookies = [`__Host-tb-session=${third}`];
    const logout = await as('logout', () => handlers.logout(logoutEvent));
    expect(logout.statusCode, logout.body).toBe(204);

    // A registered app's handoff, its broker code written with the answer lost (read back,
    // GetItem code#); redeemed, then replayed (read back, and the connection ended).
    dropAnswers.add('dynamodb:PutItem code#');
    expect(await handOff(2)).toBe(200);
    // A first redemption with the wrong verifier spends the code and ends its connection
    // (no tombstone: nobody was handed it), deleting the pointer (DeleteItem connection#).
    expect(await handOff(1, newCodeVerifier())).toBe(400);
    // A broker code that cannot be stored ends the session nobody can be handed, pointer
    // and all (DeleteItem connection#).
    failRequests.add('dynamodb:PutItem code#');
    await handOff(0);
    expect(failRequests.size, 'the code put was failed').toBe(0);
    expect(dropAnswers.size, 'the code answer was dropped').toBe(0);

    // A backend job on the service API: a token (holder), the metadata, a listing, a
    // grant Salesforce ended (deleted with its pointer), one connection ended, a user
    // offboarded.
    const job = async (
      name: string,
      patch: { connectionId?: string; rawQueryString?: string; body?: string },
    ) => {
      const event = sample(name);
      if (patch.connectionId) event.pathParameters = { connection_id: patch.connectionId };
      if (patch.rawQueryString !== undefined) event.rawQueryString = patch.rawQueryString;
      if (patch.body !== undefined) event.body = patch.body;
      const response = await as('service', () => handlers.service(event));
      return response;
    };
    const connectionOf = async (handle: string) => {
      const event = sample('session');
      event.headers = { ...event.headers, authorization: `Bearer ${handle}` };
      return JSON.parse((await handlers.session(event)).body ?? '{}') as Record<string, string>;
    };
    const jobs = await connectionOf(await signIn());
    const orgQuery = `organization_id=${jobs.organization_id}&user_id=${jobs.user_id}`;
    const token = await job('service-token', {
      connectionId: jobs.connection_id,
      body: '{"version":1}',
    });
    expect(token.statusCode, token.body).toBe(200);
    const describedEvent = sample('service-token');
    describedEvent.routeKey = 'GET /connections/{connection_id}';
    describedEvent.requestContext.http.method = 'GET';
    describedEvent.pathParameters = { connection_id: jobs.connection_id ?? '' };
    delete describedEvent.body;
    const metadata = await as('service', () => handlers.service(describedEvent));
    expect(metadata.statusCode, metadata.body).toBe(200);
    const listing = await job('service-list', { rawQueryString: orgQuery });
    expect(listing.statusCode, listing.body).toBe(200);
    stack.salesforce?.inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_client',
      description: 'invalid client credentials',
      times: 2,
    });
    const misconfigured = await job('service-token', {
      connectionId: jobs.connection_id,
      body: '{"version":2}',
    });
    expect(misconfigured.statusCode, misconfigured.body).toBe(502);
    stack.salesforce?.inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_grant',
      description: 'expired access/refresh token',
      times: 1,
    });
    const ended = await job('service-token', {
      connectionId: jobs.connection_id,
      body: '{"version":2}',
    });
    expect(ended.statusCode, ended.body).toBe(401);
    const other = await connectionOf(await signIn());
    const endOne = sample('service-end-user');
    endOne.routeKey = 'DELETE /connections/{connection_id}';
    endOne.pathParameters = { connection_id: other.connection_id ?? '' };
    endOne.rawQueryString = '';
    const endedOne = await as('service', () => handlers.service(endOne));
    expect(endedOne.statusCode, endedOne.body).toBe(204);
    const endedEvent = structuredClone(describedEvent);
    endedEvent.pathParameters = { connection_id: other.connection_id ?? '' };
    const tombstone = await as('service', () => handlers.service(endedEvent));
    expect(JSON.parse(tombstone.body ?? '{}')).toMatchObject({ status: 'ended' });
    await signIn();
    const offboarded = await job('service-end-user', { rawQueryString: orgQuery });
    expect(offboarded.statusCode, offboarded.body).toBe(200);
  }, 60_000);

  afterAll(async () => {
    await new Promise((resolve) => proxy?.close(resolve));
    await stack?.close();
  });

  it.each(['refresh', 'login', 'callback', 'logout', 'session', 'token', 'service'] as const)(
    '%s is granted exactly the operations it sends',
    (route) => {
      expect([...used[route]].sort()).toEqual(granted(route));
    },
  );

  it('the publisher is granted exactly the operations it sends', async () => {
    // Prepare: the stream records of a new connection (the change capture of a stack with
    // events; its own publisher is not attached), and the publisher on an EventBridge
    // emulator of its own.
    const events = await startLocalStack({ salesforce: { autoApprove: true }, events: true });
    const bus = await startEventBridgeEmulator();
    try {
      const publisher = createPublisherHandler({
        bus: new EventBridgeBus({
          busName: 'token-broker-events',
          source: 'token-broker',
          client: new EventBridgeClient({
            endpoint: bus.url,
            region: 'us-east-1',
            credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
          }),
        }),
        log: { debug() {}, info() {}, warn() {}, error() {} },
      });
      const records = events.events?.capture.records ?? [];
      // The capture's endpoint given explicitly: process.env points at the proxy above.
      const store = new DynamoDbSessionStore({
        tableName: events.tableName,
        client: new DynamoDBClient({
          endpoint: events.env.AWS_ENDPOINT_URL_DYNAMODB,
          region: 'us-east-1',
          credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
        }),
      });
      const now = Date.now();
      await store.create({
        sessionKey: 'iam-publisher-session',
        version: 1,
        sealed: { ciphertext: new Uint8Array(1), encryptedDataKey: new Uint8Array(1) },
        committedAt: now,
        createdAt: now,
        absoluteExpiresAt: now + 60_000,
        idleExpiresAt: now + 60_000,
        orgId: '00Dxx0000001gPLEAY',
        userId: '005xx000001Sv6AAAS',
        connectionId: 'con_AAAAAAAAAAAAAAAAAAAAAA',
      });

      // Act
      const answer = await publisher({ Records: [...records] });

      // Assert
      expect(answer.batchItemFailures).toEqual([]);
      expect(bus.events.map((event) => event['detail-type'])).toEqual(['Connection Created']);
      expect(Object.keys(bus.calls).map((operation) => `events:${operation}`)).toEqual([
        ...PUBLISHER_ACCESS.actions,
      ]);
    } finally {
      await bus.close();
      await events.close();
    }
  });
});

/**
 * A loopback proxy in front of dynalite that notes each request's operation and the
 * prefix of the partition key it names (`session#`, `login#`).
 */
async function recordingProxy(
  target: string,
  seen: string[],
  dropAnswers: Set<string>,
  failRequests: Set<string>,
): Promise<Server> {
  const upstream = new URL(target);
  const server = createServer((incoming, outgoing) => {
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.on('end', () => {
      const body = Buffer.concat(chunks);
      const operation = String(incoming.headers['x-amz-target'] ?? '').split('.')[1] ?? '?';
      const parsed = JSON.parse(body.toString('utf8') || '{}') as {
        Key?: { pk?: { S?: string } };
        Item?: { pk?: { S?: string } };
        IndexName?: string;
      };
      const key = parsed.Key?.pk?.S ?? parsed.Item?.pk?.S ?? '';
      // A query names an index, not an item kind (the grant is on the index's ARN).
      const call = parsed.IndexName
        ? `dynamodb:${operation} index`
        : `dynamodb:${operation} ${key.slice(0, key.indexOf('#') + 1) || key}`;
      seen.push(call);
      const drop = dropAnswers.delete(call);
      if (failRequests.delete(call)) {
        // Refused, not applied, and not retried by the SDK (a client error).
        outgoing.writeHead(400, { 'content-type': 'application/x-amz-json-1.0' });
        outgoing.end(
          JSON.stringify({
            __type: 'com.amazonaws.dynamodb.v20120810#ValidationException',
            message: 'refused by the test',
          }),
        );
        return;
      }
      const forward = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          path: incoming.url,
          method: incoming.method,
          headers: incoming.headers,
        },
        (response) => {
          if (drop) {
            // Applied by dynalite, answer lost on the way back.
            response.resume();
            outgoing.destroy();
            return;
          }
          outgoing.writeHead(response.statusCode ?? 500, response.headers);
          response.pipe(outgoing);
        },
      );
      forward.on('error', (error) => outgoing.destroy(error));
      forward.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}
