import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { LEASE_SKEW_MS } from '../../functions/broker/refresh-decision.ts';
import { sessionKeyOf } from '../../functions/broker/session-handle.ts';
import type { HttpHandler } from '../../functions/http/route.ts';
import { createCallbackHandler } from '../../functions/routes/callback.ts';
import { createLoginHandler } from '../../functions/routes/login.ts';
import { createLogoutHandler } from '../../functions/routes/logout.ts';
import { type BrokerHarness, startBrokerHarness } from '../support/broker-harness.ts';
import { fakeOf, proxyOf, resetFaultsAndCaptures, sessionState } from '../support/fault-kit.ts';
import { httpEvent } from '../support/http-event.ts';

/**
 * Stalls and lost answers on the way to DynamoDB (the fault proxy in front of dynalite) and
 * Salesforce (the fake), over real HTTP: a commit that stalls past the lease, a delete or a
 * put that is applied while its answer is lost, and a callback whose calls would add up to
 * more than its invocation deadline.
 */
const COMMIT = 'leaseOwner = :owner AND version = :version';
const LEASE_MS = 6000;
const INVOCATION_DEADLINE_MS = 3000;

let broker: BrokerHarness;
let login: HttpHandler;
let callback: HttpHandler;
let logout: HttpHandler;

beforeAll(async () => {
  broker = await startBrokerHarness({
    dynamodbFaultProxy: true,
    salesforce: { autoApprove: true, rotation: true, reuseDetection: true, tokenLatencyMs: 20 },
    env: {
      LEASE_MS: String(LEASE_MS),
      UPSTREAM_TIMEOUT_MS: '4000',
      WAIT_BUDGET_MS: '5000',
      INVOCATION_DEADLINE_MS: String(INVOCATION_DEADLINE_MS),
      CALLBACK_URL: 'https://broker.example.com/callback',
    },
  });
  login = createLoginHandler(broker.runtime);
  callback = createCallbackHandler(broker.runtime);
  logout = createLogoutHandler(broker.runtime);
});

afterAll(async () => {
  await broker?.close();
});

beforeEach(() => resetFaultsAndCaptures(broker));

const fake = () => fakeOf(broker);
const dynamo = () => proxyOf(broker);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** `/login`, the fake's automatic approval, then `/callback`, as a browser would. */
async function logIn(sessionCookie?: string) {
  const started = await login(
    httpEvent({
      method: 'GET',
      path: '/login',
      ...(sessionCookie ? { cookies: [sessionCookie] } : {}),
    }),
  );
  const loginCookie = String(started.cookies?.[0]).split(';')[0] ?? '';
  const approved = await fetch(String(started.headers?.location), { redirect: 'manual' });
  const back = new URL(approved.headers.get('location') ?? '');
  const begun = Date.now();
  const result = await callback(
    httpEvent({
      method: 'GET',
      path: '/callback',
      rawQueryString: back.search.slice(1),
      cookies: [loginCookie, ...(sessionCookie ? [sessionCookie] : [])],
    }),
  );
  const sessionSetCookie = result.cookies?.find((cookie) =>
    cookie.startsWith('__Host-tb-session='),
  );
  return {
    result,
    elapsedMs: Date.now() - begun,
    cookie: sessionSetCookie?.split(';')[0],
    handle: sessionSetCookie?.split(';')[0]?.split('=')[1],
  };
}

describe('A commit stalled past the lease', () => {
  it('is timed out by the SDK and retried inside the lease: one token call, the session lives', async () => {
    // Prepare: the first commit attempt is held by the network for longer than the lease
    const session = await broker.seedSession();
    dynamo().inject({ operation: 'UpdateItem', kind: 'delay', match: COMMIT, ms: LEASE_MS + 2000 });
    const reuseBefore = fake().reuseRevocations;
    const started = Date.now();

    // Act: the holder, then a second caller just after the lease (and its skew margin) ends
    const holder = broker.refresh(session.handle);
    await sleep(LEASE_MS + LEASE_SKEW_MS + 100 - (Date.now() - started));
    const late = await broker.refresh(session.handle, { version: 1 });
    const first = await holder;

    // Assert: the rotated token was stored in time; the late caller gets it, no upstream call
    expect(first.status).toBe(200);
    expect(late.status).toBe(200);
    expect(fake().calls.tokenRefresh).toBe(1);
    expect(fake().reuseRevocations - reuseBefore).toBe(0);
    expect(await sessionState(broker, fake(), session)).toMatchObject({
      exists: true,
      version: 2,
      storedTokenActive: true,
    });
    expect(broker.log.events()).not.toContain('rotation_lost');
  });
});

describe('A delete whose answer is lost', () => {
  it('still revokes the grant at Salesforce on /logout', async () => {
    // Prepare: DynamoDB applies the delete, then answers 500; the SDK's retry finds nothing
    const session = await broker.seedSession();
    dynamo().inject({ operation: 'DeleteItem', kind: 'apply-then-internal', times: 1 });

    // Act
    const response = await logout(
      httpEvent({
        method: 'POST',
        path: '/logout',
        headers: { authorization: `Bearer ${session.handle}` },
      }),
    );

    // Assert
    expect(response.statusCode).toBe(204);
    expect(dynamo().faulted.DeleteItem).toBeGreaterThanOrEqual(1);
    expect(await broker.rawItem(session.handle)).toBeUndefined();
    expect(fake().calls.revoke).toBe(1);
    expect(fake().isRefreshTokenActive(session.refreshToken)).toBe(false);
    expect(broker.log.events()).toContain('session_ended');
  });

  it('still leaves the tombstone of a connection the service API ended', async () => {
    // Prepare: DynamoDB applies the session's delete, then answers 500
    const session = await broker.seedSession();
    dynamo().inject({ operation: 'DeleteItem', kind: 'apply-then-internal', times: 1 });

    // Act
    const ended = await broker.service.fetch(`/connections/${session.connectionId}`, {
      method: 'DELETE',
    });
    const described = await broker.service.fetch(`/connections/${session.connectionId}`);
    const again = await broker.refresh(session.handle);

    // Assert
    expect(ended.status).toBe(204);
    expect(dynamo().faulted.DeleteItem).toBeGreaterThanOrEqual(1);
    expect(await described.json()).toMatchObject({ status: 'ended', ended_reason: 'service_api' });
    expect(await again.json()).toMatchObject({ error: 'reauthentication_required' });
  });

  it('still revokes the session a new login replaces', async () => {
    // Prepare: a browser with a session logs in again; the old session's delete answer is lost
    const first = await logIn();
    expect(first.cookie).toBeDefined();
    const oldTokens = await broker.stored(first.handle ?? '');
    dynamo().inject({ operation: 'DeleteItem', kind: 'apply-then-internal', match: 'session#' });

    // Act
    const second = await logIn(first.cookie);

    // Assert
    expect(second.result.statusCode).toBe(302);
    expect(await broker.rawItem(first.handle ?? '')).toBeUndefined();
    expect(fake().isRefreshTokenActive(oldTokens?.tokens.refreshToken ?? '')).toBe(false);
    expect(broker.log.events()).toContain('session_ended');
  });
});

describe('A session put whose answer is lost', () => {
  it('is read back: the login completes and the new session works', async () => {
    // Prepare: the put lands, then the answer is a 500; the SDK's retry fails its condition
    dynamo().inject({ operation: 'PutItem', kind: 'apply-then-internal', match: 'session#' });

    // Act
    const { result, handle } = await logIn();
    const refreshed = await broker.refresh(handle ?? '', { version: 1 });

    // Assert
    expect(dynamo().faulted.PutItem).toBe(1);
    expect(result.statusCode).toBe(302);
    expect(String(result.headers?.location)).not.toContain('error=');
    expect(handle).toBeDefined();
    expect(refreshed.status).toBe(200);
    expect(fake().calls.revoke).toBe(0);
    expect(broker.log.events()).toContain('create_answer_lost');
    expect(broker.log.events()).not.toContain('revoke_failed');
  });
});

describe('A login transaction whose answers are lost', () => {
  it('is read back: /login starts and /callback completes, once', async () => {
    // Prepare: the transaction's put and its consuming update land, their answers are 500s
    dynamo().inject({
      operation: 'PutItem',
      kind: 'apply-then-internal',
      match: 'login#',
      times: 1,
    });
    dynamo().inject({
      operation: 'UpdateItem',
      kind: 'apply-then-internal',
      match: 'login#',
      times: 1,
    });

    // Act
    const { result, handle } = await logIn();

    // Assert: both faults hit, and the login went through as if nothing had happened
    expect(dynamo().faulted.PutItem).toBe(1);
    expect(dynamo().faulted.UpdateItem).toBe(1);
    expect(result.statusCode).toBe(302);
    expect(String(result.headers?.location)).not.toContain('error=');
    expect(handle).toBeDefined();
    expect(broker.log.events()).not.toContain('invalid_state');
  });

  it('still refuses a replayed callback after its own answer was lost', async () => {
    // Prepare: one login, the consume's answer lost; keep the callback request
    const started = await login(httpEvent({ method: 'GET', path: '/login' }));
    const loginCookie = String(started.cookies?.[0]).split(';')[0] ?? '';
    const approved = await fetch(String(started.headers?.location), { redirect: 'manual' });
    const query = new URL(approved.headers.get('location') ?? '').search.slice(1);
    const callbackEvent = () =>
      httpEvent({
        method: 'GET',
        path: '/callback',
        rawQueryString: query,
        cookies: [loginCookie],
      });
    dynamo().inject({
      operation: 'UpdateItem',
      kind: 'apply-then-internal',
      match: 'login#',
      times: 1,
    });

    // Act
    const first = await callback(callbackEvent());
    const replay = await callback(callbackEvent());

    // Assert: the read-back recognised only the first call's own mark
    expect(first.statusCode).toBe(302);
    expect(String(first.headers?.location)).not.toContain('error=');
    expect(replay.statusCode).toBe(400);
    expect(broker.log.events()).toContain('invalid_state');
  });
});

describe('/callback under a deadline', () => {
  it('answers by its deadline when the replaced session cannot be revoked in time', async () => {
    // Prepare: a slow code exchange (1 s) and a revoke endpoint that never answers in time;
    // each alone is within the 4 s upstream timeout, together they are not
    const first = await logIn();
    fake().inject({ endpoint: 'token', kind: 'delay', ms: 1000 });
    fake().inject({ endpoint: 'revoke', kind: 'delay', ms: 10_000 });

    // Act
    const second = await logIn(first.cookie);

    // Assert: the new session is stored and answered before the deadline; the old one is
    // gone from the broker and its failed revocation is reported
    expect(second.result.statusCode).toBe(302);
    expect(second.handle).toBeDefined();
    expect(second.elapsedMs).toBeLessThan(INVOCATION_DEADLINE_MS + 700);
    expect(await broker.rawItem(first.handle ?? '')).toBeUndefined();
    expect(broker.log.events()).toContain('revoke_failed');
    expect(await broker.stored(second.handle ?? '')).toMatchObject({ version: 1 });
    expect(sessionKeyOf(second.handle ?? '')).not.toBe(sessionKeyOf(first.handle ?? ''));
  });
});
